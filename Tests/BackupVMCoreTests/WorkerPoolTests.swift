import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// An executor whose recover() blocks until the test lets it go: a recovery that takes minutes.
final class BlockingRecovery: BackupExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private let gate = DispatchSemaphore(value: 0)
    private var entered: [String] = []
    private var left = 0
    private var backups: [String] = []

    func locate(vm: String) throws -> String { "kvm1" }

    func backup(
        vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?
    ) throws -> BackupReport {
        lock.withLock { backups.append(vm) }
        return BackupReport(host: host, backupID: "20261127T000000Z", bytes: 1)
    }

    func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw VerifyFailure("this executor runs no verify jobs")
    }
    func recover(vm: String, jobName: String) throws -> String {
        lock.withLock { entered.append(vm) }
        _ = gate.wait(timeout: .now() + 60)  // a failing test must not hang forever
        lock.withLock { left += 1 }
        return "cleaned"
    }

    func release() { gate.signal() }
    var recovering: [String] { lock.withLock { entered } }
    var recoveriesFinished: Int { lock.withLock { left } }
    var backedUp: [String] { lock.withLock { backups } }
}

/// Polls without blocking a thread of the concurrency pool (the pool under test runs there too).
func eventuallyAsync(timeout: TimeInterval = 30, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return condition()
}

/// Runs a pool until it exits by itself (exitWhenIdle); stops it after `timeout` seconds so that a
/// failing test fails instead of hanging. True when it exited by itself.
final class PoolRun: @unchecked Sendable {
    let pool: WorkerPool
    private let lock = NSLock()
    private var exited = false

    init(_ pool: WorkerPool) {
        self.pool = pool
        Task.detached { [self] in
            await pool.run()
            lock.withLock { exited = true }
        }
    }

    var hasExited: Bool { lock.withLock { exited } }

    func finish(timeout: TimeInterval = 30) async -> Bool {
        if await eventuallyAsync(timeout: timeout, { hasExited }) { return true }
        pool.channel.requestAbort()
        _ = await eventuallyAsync(timeout: timeout) { hasExited }
        return false
    }
}

/// The worker pool in this process (inotify is process-wide state: one pool at a time).
@Suite("worker pool: recovery runs beside claiming", .tags(.spool), .serialized)
struct WorkerPoolTests {
    let logger = Logger(label: "test")
    let dir = TempDir("pool")

    func pool(_ spool: Spool, _ executor: BlockingRecovery, maxGlobal: Int) -> WorkerPool {
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: maxGlobal, maxPerHost: maxGlobal, executor: executor,
            isKnownVM: { _ in true }, logger: logger)
        let recovery = OrphanRecovery(spool: spool, executor: executor, maxRecoveries: 3, logger: logger)
        return WorkerPool(
            spool: spool, runner: runner, recovery: recovery,
            settings: WorkerPoolSettings(
                maxGlobal: maxGlobal, maxPerHost: maxGlobal, rescanInterval: 3600, exitWhenIdle: true),
            logger: logger)
    }

    /// A job left in active/ by a worker that died: its file is there and its flock is free.
    func orphan(_ spool: Spool, vm: String) throws -> String {
        let name = try spool.enqueue(JobRequest(vm: vm))
        let job = try #require(try spool.claim(name))
        job.closeDescriptor()
        return name
    }

    func record(_ spool: Spool, _ name: String, in state: JobState) -> String {
        (try? String(contentsOfFile: state.directory(in: spool.layout) + "/" + name, encoding: .utf8)) ?? ""
    }

    @Test func aQueuedJobRunsWhileARecoveryIsStuck() async throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let executor = BlockingRecovery()
        let stuck = try orphan(spool, vm: "stuck01")
        let fresh = try spool.enqueue(JobRequest(vm: "fresh01"))
        let pool = pool(spool, executor, maxGlobal: 2)
        let run = PoolRun(pool)

        #expect(await eventuallyAsync { executor.recovering == ["stuck01"] }, "the recovery started")
        let freshDone = await eventuallyAsync { spool.names(in: .done) == [fresh] }
        #expect(freshDone, "the fresh job ran to done/ while the recovery was blocked")
        #expect(executor.recoveriesFinished == 0, "the recovery was still blocked then")

        executor.release()
        #expect(await run.finish(), "the pool ran the recovered job too, then exited")
        #expect(spool.names(in: .done).count == 2)
        #expect(spool.names(in: .failed).isEmpty && spool.names(in: .active).isEmpty)
        #expect(record(spool, stuck, in: .done).contains("recovered="))
        #expect(executor.backedUp == ["fresh01", "stuck01"])
    }

    @Test func aJobOfTheVMUnderRecoveryWaitsForIt() async throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let executor = BlockingRecovery()
        let stuck = try orphan(spool, vm: "web01")
        let fresh = try spool.enqueue(JobRequest(vm: "web01"))
        let other = try spool.enqueue(JobRequest(vm: "db01"))
        let pool = pool(spool, executor, maxGlobal: 1)
        let run = PoolRun(pool)

        #expect(await eventuallyAsync { executor.recovering == ["web01"] })
        // The pool did pass over new/ meanwhile: db01's job, queued behind web01's, ran.
        #expect(await eventuallyAsync { spool.names(in: .done) == [other] })
        #expect(spool.names(in: .new) == [fresh], "web01's job stays queued, it does not fail as already running")
        #expect(spool.names(in: .failed).isEmpty)

        executor.release()
        #expect(await run.finish())
        #expect(spool.names(in: .failed).isEmpty, "\(spool.names(in: .failed).map { record(spool, $0, in: .failed) })")
        #expect(Set(spool.names(in: .done)) == [stuck, fresh, other])
        #expect(executor.backedUp.sorted() == ["db01", "web01", "web01"])
    }
}
