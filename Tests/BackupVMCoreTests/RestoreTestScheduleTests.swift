import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// Restore tests scheduled like backups: the cron tick queues a `kind=restore-test` job when the VM's
/// RestoreTestEveryDays is due, the worker runs it through the executor's restoreTest, and its
/// result never counts as a backup's.
@Suite("restore tests on a schedule", .tags(.unit))
struct RestoreTestScheduleTests {
    /// Records which step a job ran.
    final class Calls: @unchecked Sendable {
        var steps: [String] = []
    }

    struct RecordingExecutor: BackupExecutor {
        let calls: Calls
        var failTest: String?

        func locate(vm: String) throws -> String { "kvm1" }
        func backup(
            vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?
        ) throws -> BackupReport {
            calls.steps.append("backup \(vm)")
            return BackupReport(host: host, backupID: "20261127T000000Z", bytes: 123)
        }
        func restoreTest(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
            calls.steps.append("restore-test \(vm)")
            if let failTest { throw RestoreTestFailure(failTest) }
            return BackupReport(host: host, backupID: "20261127T000000Z", bytes: 0)
        }
        func recover(vm: String, jobName: String) throws -> String {
            calls.steps.append("recover \(vm)")
            return "cleaned"
        }
        func recoverRestoreTest(vm: String) throws -> String {
            calls.steps.append("recover-test \(vm)")
            return "copy removed"
        }
        func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
            calls.steps.append("verify \(vm)")
            return BackupReport(host: "", backupID: "20261127T000000Z", bytes: 0)
        }
    }

    /// A worker that died during a restore test: recovery removes the copy (through the executor,
    /// as `any BackupExecutor`), not the backup's snapshots, then requeues the test.
    @Test func aDeadWorkersRestoreTestIsRecoveredAsATest() throws {
        let h = try harness()
        let calls = Calls()
        let spool = h.services.spool
        let name = try spool.enqueue(JobRequest(vm: h.vm, kind: .restoreTest))
        let job = try #require(try spool.claim(name))
        job.closeDescriptor()  // the worker died
        let outcomes = OrphanRecovery(
            spool: spool, executor: RecordingExecutor(calls: calls), maxRecoveries: 3, logger: Logger(label: "r")
        ).run()
        #expect(outcomes == [.requeued(name)])
        #expect(calls.steps == ["recover-test \(h.vm)"])
        if case .success(let f)? = spool.read(name, in: .new) {
            #expect(f.request.kind == .restoreTest && f.recoveries == 1)
        } else {
            Issue.record("the job is not back in new/")
        }
    }

    func harness() throws -> PipelineHarness {
        try PipelineHarness(ScriptedVMs.lvm(), mode: .hot, profile: "RestoreTestEveryDays=7", main: "BackupHours=0-24")
    }

    func tick(_ h: PipelineHarness, now: Date = Date()) throws -> Enqueuer.TickResult {
        try Enqueuer(configuration: h.configuration, spool: h.services.spool, logger: Logger(label: "tick"))
            .tick(now: now)
    }

    func queuedKinds(_ h: PipelineHarness) -> [JobKind] {
        h.services.spool.names(in: .new).compactMap { h.services.spool.peek($0)?.request.kind }
    }

    @Test func theTickQueuesARestoreTestWhenItIsDueAndOnlyThen() throws {
        let h = try harness()
        let none = try tick(h)
        #expect(queuedKinds(h) == [.backup], "no backup yet: the backup is queued, no test")
        #expect(none.decisions.contains { $0.reason == "restore test: its backup goes first" }, "\(none.decisions)")
        for name in h.services.spool.names(in: .new) { unlink(h.services.spool.layout.new + "/" + name) }
        _ = try h.goodBackup()
        let first = try tick(h)
        #expect(queuedKinds(h) == [.restoreTest], "\(first.decisions)")
        #expect(first.decisions.contains { $0.reason == "restore test: never tested" })
        _ = try tick(h)
        #expect(queuedKinds(h) == [.restoreTest], "an open job: nothing more")
        for name in h.services.spool.names(in: .new) { unlink(h.services.spool.layout.new + "/" + name) }

        let ref = try #require(h.store.catalog.backups(of: h.vm).last)
        func tested(daysAgo: Double) {
            BackupVerifier.record(
                RestoreTestRecord(
                    tested: Timestamps.iso(Date().addingTimeInterval(-daysAgo * 86400)), ok: true, host: "kvm1",
                    name: "x", bootSeconds: 3, signal: "console", problem: nil), for: ref)
        }
        tested(daysAgo: 1)
        let recent = try tick(h)
        #expect(queuedKinds(h).isEmpty, "tested a day ago, every 7 days: \(recent.decisions)")
        tested(daysAgo: 8)
        let old = try tick(h)
        #expect(queuedKinds(h) == [.restoreTest], "\(old.decisions)")
        for name in h.services.spool.names(in: .new) { unlink(h.services.spool.layout.new + "/" + name) }
        tested(daysAgo: -2)  // the clock was set back since: it does not count
        #expect(try tick(h).decisions.contains { $0.reason.hasPrefix("restore test: never tested") })
        for name in h.services.spool.names(in: .new) { unlink(h.services.spool.layout.new + "/" + name) }
        h.hypervisor.failAlways(.save)
        try h.backup()
        let failing = try tick(h)
        #expect(
            failing.decisions.contains { $0.reason == "restore test: its last backup failed; that goes first" },
            "\(failing.decisions)")
        #expect(!queuedKinds(h).contains(.restoreTest))
        #expect(BackupVerifier.lastRecord(ref)?.ok == nil, "a restore test never records a verification")
    }

    /// Issue #19 item 15: a restore test that failed before it checked the stored images (no room, a
    /// host that did not answer) wrote a verify record saying `ok` for a backup never verified.
    @Test func aTestThatFailedBeforeItsCheckRecordsNoVerification() throws {
        let h = try harness()
        _ = try h.goodBackup()
        let ref = try #require(h.store.catalog.backups(of: h.vm).last)
        let failed = RestoreTestRecord(
            tested: Timestamps.iso(Date()), ok: false, host: "kvm1", name: "x", bootSeconds: nil, signal: nil,
            problem: "not enough room in /var/lib/backup_vm/vm1/restoretest")
        BackupVerifier.record(failed, for: ref)
        let record = try #require(BackupVerifier.lastRecord(ref))
        #expect(record.ok == nil && record.verified == nil && record.restoreTest == failed, "\(record)")
        // A later verify fills the verify fields and keeps the test's result.
        let verified = BackupVerifier().verify(ref)
        let after = try #require(BackupVerifier.lastRecord(ref))
        #expect(after.ok == verified.ok && after.verified != nil && after.restoreTest == failed)
    }

    @Test func theWorkerRunsTheTestAndItsResultIsNotABackups() throws {
        let h = try harness()
        let calls = Calls()
        var runner = JobRunner(
            locks: h.services.spool.locks, maxGlobal: 2, maxPerHost: 1,
            executor: RecordingExecutor(calls: calls, failTest: "did not boot"), isKnownVM: { _ in true },
            logger: Logger(label: "runner"))
        runner.afterJob = nil
        let ok = try h.services.spool.createClaimed(JobRequest(vm: h.vm, requestedBy: "test"))
        guard case .succeeded = runner.run(ok, slots: .wait) else { throw HarnessError(description: "backup failed") }
        let test = try h.services.spool.createClaimed(JobRequest(vm: h.vm, requestedBy: "test", kind: .restoreTest))
        guard case .failed(let reason) = runner.run(test, slots: .wait) else {
            throw HarnessError(description: "passed")
        }
        #expect(reason == "did not boot")
        #expect(calls.steps == ["backup \(h.vm)", "restore-test \(h.vm)"])
        let history = FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0]
        #expect(
            history.consecutiveFailures == 0 && history.lastJob?.kind == .backup, "a failed test is no failed backup")
        #expect(history.lastRestoreTest?.status == .failed && history.lastRestoreTest?.reason == "did not boot")
        let metrics = MetricsFile.render(MetricsFile.snapshot(configuration: h.configuration))
        #expect(metrics.contains("backup_vm_restore_test_ok{vm=\"\(h.vm)\"} 0\n"), "\(metrics)")
        #expect(metrics.contains("backup_vm_consecutive_failures{vm=\"\(h.vm)\"} 0\n"))
        let report = DailyReport.gather(configuration: h.configuration, hours: 24)
        #expect(report.jobsDone == 1 && report.jobsFailed == 0 && report.testsFailed == 1 && !report.healthy)
        #expect(report.text().contains("0 restore tests booted, 1 failed."), "\(report.text())")
    }

    @Test func theJobFileSaysItsKind() throws {
        let text = JobRequest(vm: "web01", requestedBy: "t", kind: .restoreTest).serialized()
        #expect(text.contains("kind=restore-test\n"))
        #expect(try JobFile.parse(Array(text.utf8)).request.kind == .restoreTest)
        #expect(try JobFile.parse(Array("vm=web01\n".utf8)).request.kind == .backup, "old job files are backups")
        #expect(!JobRequest(vm: "web01").serialized().contains("kind="))
        #expect(throws: JobFile.ParseError.self) { try JobFile.parse(Array("vm=web01\nkind=wipe\n".utf8)) }
        do {
            _ = try JobFile.parse(Array("vm=web01\nkind=wipe\n".utf8))
        } catch {
            #expect(error.description == "kind='wipe': expected backup, restore-test or verify")
        }
    }

    /// Only a test that ran and failed is recorded; a damaged image is recorded as verify's failure too.
    @Test func whatARestoreTestRecordsWhenItFails() throws {
        #expect(
            RestoreTest.isTestFailure(RestoreError.damagedImage(vm: "a", id: "b", file: "vda.raw.lzo", detail: "x")))
        #expect(RestoreTest.isTestFailure(RestoreTestFailure("define failed")))
        #expect(!RestoreTest.isTestFailure(RestoreError.hostNotConfigured(host: "kvm9", hosts: ["kvm1"])))
        #expect(!RestoreTest.isTestFailure(RestoreTestRefusal(description: "somebody's domain")))
        #expect(!RestoreTest.isTestFailure(PipelineError.aborted))
        let h = try harness()
        _ = try h.goodBackup()
        let ref = try #require(h.store.catalog.backups(of: h.vm).last)
        let failed = RestoreTestRecord(
            tested: Timestamps.iso(Date()), ok: false, host: "kvm1", name: "x", bootSeconds: nil, signal: nil,
            problem: "damaged")
        BackupVerifier.record(failed, for: ref, damaged: "vda.raw.lzo: sha256 mismatch")
        let record = try #require(BackupVerifier.lastRecord(ref))
        #expect(
            record.ok == false && record.problems == ["vda.raw.lzo: sha256 mismatch"] && record.restoreTest?.ok == false
        )
        let history = FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0]
        #expect(history.newestBackup == nil, "a backup found damaged is not a good one")
    }
}
