import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// A scripted executor for in-process tests of the spool machinery.
struct FakeExecutor: BackupExecutor {
    var host = "kvm1"
    var fail: String?
    var recoverNote = "cleaned"

    struct Failure: Error, CustomStringConvertible { let description: String }

    func locate(vm: String) throws -> String { host }
    func backup(
        vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?
    ) throws -> BackupReport {
        if let fail { throw Failure(description: fail) }
        return BackupReport(host: host, backupID: "20261127T000000Z", bytes: 123)
    }
    func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw VerifyFailure("this executor runs no verify jobs")
    }
    func recover(vm: String, jobName: String) throws -> String { recoverNote }
}

@Suite("spool (in-process, real files)", .tags(.spool))
struct SpoolTests {
    let logger = Logger(label: "test")
    // Swift Testing makes a new suite value per test: each test gets its own directory, kept for the
    // test's whole run and removed after it.
    let dir = TempDir("spool")

    func makeSpool() throws -> (TempDir, Spool) {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        return (dir, spool)
    }

    @Test func enqueueWritesAValidJobIntoNew() throws {
        let (_, spool) = try makeSpool()
        let name = try spool.enqueue(JobRequest(vm: "web01", requestedBy: "test"))
        #expect(spool.names(in: .new) == [name])
        #expect(try Files.visibleEntries(spool.layout.tmp).isEmpty)
        let job = try #require(spool.peek(name))
        #expect(job.request.vm == "web01")
        #expect(spool.hasOpenJob(for: "web01") && !spool.hasOpenJob(for: "db01"))
        var st = stat()
        stat(spool.layout.root, &st)
        #expect(st.st_mode & 0o777 == 0o700, "the spool is root's alone")
    }

    @Test func claimIsExclusiveUnderContention() throws {
        let (_, spool) = try makeSpool()
        var queued: [String] = []
        for i in 0..<200 { queued.append(try spool.enqueue(JobRequest(vm: "vm\(i)"))) }
        let names = queued
        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var claims: [String: Int] = [:]
            var held: [ClaimedJob] = []
        }
        let tally = Tally()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for name in names {
                if let job = try? spool.claim(name) {
                    tally.lock.withLock {
                        tally.claims[name, default: 0] += 1
                        tally.held.append(job)
                    }
                }
            }
        }
        let claims = tally.claims
        let held = tally.held
        #expect(claims.count == 200)
        #expect(claims.values.allSatisfy { $0 == 1 })
        #expect(spool.names(in: .new).isEmpty)
        #expect(spool.names(in: .active).count == 200)
        withExtendedLifetime(held) {}
    }

    @Test func finishMovesWithResultRecord() throws {
        let (_, spool) = try makeSpool()
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let job = try #require(try spool.claim(name))
        try job.finish(JobResult(status: .done, started: Date(), host: "kvm2", bytes: 77))
        #expect(spool.names(in: .active).isEmpty && spool.names(in: .done) == [name])
        guard case .success(let file)? = spool.read(name, in: .done) else {
            Issue.record("unreadable")
            return
        }
        #expect(file.resultStatus == .done && file.resultFields["host"] == "kvm2" && file.resultFields["bytes"] == "77")
        #expect(file.resultFields["started"] != nil && file.resultFields["finished"] != nil)
    }

    @Test func ownedActiveJobIsNotAnOrphan() throws {
        let (_, spool) = try makeSpool()
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let job = try #require(try spool.claim(name))
        #expect(try spool.adoptOrphan(name) == nil, "a live owner's lock keeps it")
        job.closeDescriptor()  // the owner dies
        #expect(try spool.adoptOrphan(name) != nil)
    }

    @Test func recoveryCleansUpThenRequeuesThenGivesUp() throws {
        let (_, spool) = try makeSpool()
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let recovery = OrphanRecovery(
            spool: spool, executor: FakeExecutor(recoverNote: "snapshot removed"), maxRecoveries: 2, logger: logger)
        for round in 1...3 {
            let job = try #require(try spool.claim(name))
            job.closeDescriptor()  // worker died mid-job
            let outcomes = recovery.run()
            if round <= 2 {
                #expect(outcomes == [.requeued(name)])
                #expect(spool.names(in: .new) == [name])
                if case .success(let f)? = spool.read(name, in: .new) { #expect(f.recoveries == round) }
            } else {
                #expect(outcomes.count == 1)
                guard case .failed(_, let reason) = outcomes[0] else {
                    Issue.record("\(outcomes)")
                    return
                }
                #expect(reason.contains("3 times") && reason.contains("snapshot removed"))
                #expect(spool.names(in: .failed) == [name])
            }
        }
    }

    @Test func recoveryFinishesAMoveInterruptedAfterTheResult() throws {
        let (_, spool) = try makeSpool()
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let job = try #require(try spool.claim(name))
        try job.append(JobResult(status: .done, host: "kvm1").serialized())
        job.closeDescriptor()
        let outcomes = OrphanRecovery(spool: spool, executor: FakeExecutor(), maxRecoveries: 3, logger: logger).run()
        #expect(outcomes == [.finishedMove(name)])
        #expect(spool.names(in: .done) == [name])
    }

    @Test func runnerFailsUnknownVMAndGarbage() throws {
        let (dir, spool) = try makeSpool()
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: 2, maxPerHost: 1, executor: FakeExecutor(),
            isKnownVM: { $0 == "web01" }, logger: logger)
        try Data([0xff, 0x00, 0x41]).write(to: URL(fileURLWithPath: spool.layout.new + "/garbage"))
        let unknown = try spool.enqueue(JobRequest(vm: "nosuchvm"))
        for name in ["garbage", unknown] {
            let job = try #require(try spool.claim(name))
            guard case .failed(let reason) = runner.run(job, slots: .wait) else {
                Issue.record("expected failure")
                continue
            }
            #expect(reason.contains(name == "garbage" ? "unreadable job" : "unknown VM 'nosuchvm'"), "\(reason)")
        }
        #expect(spool.names(in: .failed) == ["garbage", unknown].sorted())
        let text = try String(contentsOfFile: spool.layout.failed + "/garbage", encoding: .isoLatin1)
        #expect(text.contains("status=failed") && text.contains("reason=unreadable job"))
        _ = dir
    }

    @Test func failedBackupRecordsReasonAndReleasesLocks() throws {
        let (_, spool) = try makeSpool()
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: 1, maxPerHost: 1,
            executor: FakeExecutor(fail: "ssh: connect to host kvm1: refused"),
            isKnownVM: { _ in true }, logger: logger)
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let job = try #require(try spool.claim(name))
        #expect(runner.run(job, slots: .wait) == .failed("ssh: connect to host kvm1: refused"))
        #expect(FileLock.isFree(spool.locks.globalSlotPath(0)))
        #expect(FileLock.isFree(spool.locks.hostSlotPath("kvm1", 0)))
        #expect(FileLock.isFree(spool.locks.vmLockPath("web01")))
    }

    @Test func busyHostDefersInsteadOfBlocking() throws {
        let (_, spool) = try makeSpool()
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: 3, maxPerHost: 1, executor: FakeExecutor(host: "kvm1"),
            isKnownVM: { _ in true }, logger: logger)
        let hostSlot = try #require(try spool.locks.tryAcquireHost("kvm1", limit: 1))
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        let job = try #require(try spool.claim(name))
        let global = try #require(try spool.locks.tryAcquireGlobal(limit: 3))
        #expect(runner.run(job, slots: .pool(globalSlot: global)) == .deferred(vm: "web01", host: "kvm1"))
        #expect(spool.names(in: .new) == [name], "back in the queue, untouched")
        #expect(FileLock.isFree(spool.locks.globalSlotPath(0)), "the global slot is given back")
        hostSlot.release()
    }

    @Test func secondJobOfARunningVMFails() throws {
        let (_, spool) = try makeSpool()
        let runner = JobRunner(
            locks: spool.locks, maxGlobal: 3, maxPerHost: 3, executor: FakeExecutor(),
            isKnownVM: { _ in true }, logger: logger)
        let vmLock = try #require(try spool.locks.tryAcquireVM("web01"))
        vmLock.describeHolder("pid=1 job=other")
        let job = try #require(try spool.claim(try spool.enqueue(JobRequest(vm: "web01"))))
        guard case .failed(let reason) = runner.run(job, slots: .wait) else {
            Issue.record("expected failure")
            return
        }
        #expect(reason.contains("already running") && reason.contains("job=other"))
    }

    @Test func tmpSweepRemovesOnlyOldFiles() throws {
        let (_, spool) = try makeSpool()
        try "vm=x".write(toFile: spool.layout.tmp + "/old", atomically: false, encoding: .utf8)
        try "vm=y".write(toFile: spool.layout.tmp + "/fresh", atomically: false, encoding: .utf8)
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, spool.layout.tmp + "/old", &times, 0)
        let removed = spool.sweepTmp(olderThan: 36 * 3600)
        #expect(removed == ["old"])
        #expect(Files.exists(spool.layout.tmp + "/fresh"))
    }

    @Test func emptyHandWrittenFileWaitsUntilWritten() throws {
        let (_, spool) = try makeSpool()
        FileManager.default.createFile(atPath: spool.layout.new + "/byhand", contents: Data())
        #expect(try spool.pendingJobs().isEmpty)
        #expect(try spool.pendingJobs(now: Date().addingTimeInterval(10)).map(\.name) == ["byhand"])
    }

    @Test func slotsLimitAcrossHolders() throws {
        let (_, spool) = try makeSpool()
        let a = try spool.locks.tryAcquireGlobal(limit: 2)
        let b = try spool.locks.tryAcquireGlobal(limit: 2)
        #expect(a != nil && b != nil)
        #expect(try spool.locks.tryAcquireGlobal(limit: 2) == nil)
        a?.release()
        #expect(try spool.locks.tryAcquireGlobal(limit: 2) != nil)
        withExtendedLifetime(b) {}
    }
}
