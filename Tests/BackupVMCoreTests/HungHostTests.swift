import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// An executor with two hosts: every backup on kvm1 hangs (a hung libvirtd or a frozen disk) until
/// the test lets it end the way a command limit ends it; backups on kvm2 finish at once.
final class HungHostExecutor: BackupExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private let gate = DispatchSemaphore(value: 0)
    private var hung: [String] = []
    private var finished: [String] = []

    func locate(vm: String) throws -> String { vm.hasPrefix("hung") ? "kvm1" : "kvm2" }

    func backup(
        vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?
    ) throws -> BackupReport {
        if host == "kvm1" {
            lock.withLock { hung.append(vm) }
            _ = gate.wait(timeout: .now() + 60)  // a failing test must not hang forever
            throw RemoteError.timedOut(host: host, what: "virsh save \(vm)", cut: .timedOut(seconds: 3600))
        }
        lock.withLock { finished.append(vm) }
        return BackupReport(host: host, backupID: "20261127T000000Z", bytes: 1)
    }

    func recover(vm: String, jobName: String) throws -> String { "nothing to recover" }
    func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw VerifyFailure("this executor runs no verify jobs")
    }

    func release() { gate.signal() }
    var hanging: [String] { lock.withLock { hung } }
    var done: [String] { lock.withLock { finished } }
}

extension WorkerPoolTests {
    /// Issue #9's fault suite, "the daemon goes on serving other jobs": a job stuck on a hung host holds
    /// that host's slot and one global slot, never the pool; when its command limit ends it, the job
    /// fails with one line that says what was ended and why.
    @Test func aHungHostDoesNotStopOtherHosts() async throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let executor = HungHostExecutor()
        let hung = try spool.enqueue(JobRequest(vm: "hung01"))
        let others = try (1...4).map { try spool.enqueue(JobRequest(vm: "ok0\($0)")) }
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: 2, maxPerHost: 1, executor: executor, isKnownVM: { _ in true },
            logger: logger)
        let pool = WorkerPool(
            spool: spool, runner: runner,
            recovery: OrphanRecovery(spool: spool, executor: executor, maxRecoveries: 3, logger: logger),
            settings: WorkerPoolSettings(maxGlobal: 2, maxPerHost: 1, rescanInterval: 3600, exitWhenIdle: true),
            logger: logger)
        let run = PoolRun(pool)

        // Generous waits: under a parallel `swift test` other suites' blocking tests can hold the few
        // threads of the concurrency pool that the pool's loop runs on (CI runs the tiers serially).
        #expect(await eventuallyAsync(timeout: 120) { executor.hanging == ["hung01"] })
        #expect(
            await eventuallyAsync(timeout: 120) { Set(spool.names(in: .done)) == Set(others) },
            "kvm2's jobs all ran while kvm1's hung")
        #expect(executor.hanging == ["hung01"] && spool.names(in: .active) == [hung], "still hung meanwhile")

        executor.release()
        #expect(await run.finish(timeout: 120))
        #expect(spool.names(in: .failed) == [hung])
        let reason = record(spool, hung, in: .failed).split(separator: "\n").first { $0.hasPrefix("reason=") }.map(
            String.init)
        #expect(
            reason == "reason=virsh save hung01 on kvm1 was ended: no result after 3600 s (timeout); the host or its"
                + " libvirtd/LVM may be hung")
    }
}
