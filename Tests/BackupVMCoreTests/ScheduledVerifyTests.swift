import ChunkWire
import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// Issue #19 item 3: verification on a schedule (VerifyEveryDays), so that damage is found before a
/// restore needs the backup; a chunk verified within the period is not read again.
@Suite("scheduled verification", .tags(.unit))
struct ScheduledVerifyTests {
    func harness(days: Int = 7) throws -> PipelineHarness {
        try PipelineHarness(
            ScriptedVMs.files(), profile: "VerifyEveryDays=\(days)",
            main: "BackupHours=0-24\n\(ChunkPipelineTests.chunkMain)")
    }

    func tick(_ h: PipelineHarness, now: Date = Date()) throws -> Enqueuer.TickResult {
        try Enqueuer(configuration: h.configuration, spool: h.services.spool, logger: Logger(label: "tick"))
            .tick(now: now)
    }

    func queuedKinds(_ h: PipelineHarness) -> [JobKind] {
        h.services.spool.names(in: .new).compactMap { h.services.spool.peek($0)?.request.kind }
    }

    func clearQueue(_ h: PipelineHarness) {
        for name in h.services.spool.names(in: .new) { unlink(h.services.spool.layout.new + "/" + name) }
    }

    /// Runs one verify job through the real JobRunner, as the daemon would.
    func runVerifyJob(_ h: PipelineHarness) throws -> (outcome: JobOutcome, record: [String: String]) {
        let job = try h.services.spool.createClaimed(JobRequest(vm: h.vm, requestedBy: "test", kind: .verify))
        let outcome = h.services.runner.run(job, slots: .wait)
        let state: JobState = if case .succeeded = outcome { .done } else { .failed }
        guard case .success(let file)? = h.services.spool.read(job.name, in: state) else {
            throw HarnessError(description: "job \(job.name) is not in \(state.rawValue)/")
        }
        return (outcome, file.resultFields)
    }

    var shared: ChunkDigest { ChunkTestData.digest(ChunkTestData.text(ChunkTestData.chunk, seed: "kvm1".count)) }

    @Test func theTickQueuesAVerifyWhenABackupWasNotVerifiedWithinThePeriod() throws {
        let h = try harness()
        _ = try tick(h)
        #expect(queuedKinds(h) == [.backup], "the backup goes first")
        clearQueue(h)
        _ = try h.goodBackup()
        let first = try tick(h)
        #expect(queuedKinds(h) == [.verify], "\(first.decisions)")
        #expect(first.decisions.contains { $0.reason == "verify: 1 backups not verified within 7 days" })
        _ = try tick(h)
        #expect(queuedKinds(h) == [.verify], "an open job: nothing more")
        clearQueue(h)
        #expect(try runVerifyJob(h).record["status"] == "done")
        _ = try tick(h)
        #expect(queuedKinds(h).isEmpty, "verified just now")
        let eightDays = Date().addingTimeInterval(8 * 86400)
        let later = try tick(h, now: eightDays)
        #expect(later.decisions.contains { $0.reason == "verify: its backup or restore test goes first" })
        let verify = ScheduledVerify(configuration: h.configuration, logger: Logger(label: "v"))
        #expect(verify.due(h.vm, now: eightDays).count == 1, "due again after the period")
    }

    @Test func aVerifyJobFindsDamageQuarantinesItAndFails() throws {
        let h = try harness()
        _ = try h.goodBackup()
        let store = ChunkStore(storage: h.configuration.main.backupStorage)
        var bytes = try #require(FileManager.default.contents(atPath: store.chunkPath(shared)))
        bytes[bytes.count / 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: store.chunkPath(shared)))
        let run = try runVerifyJob(h)
        #expect(run.record["status"] == "failed")
        #expect(run.record["reason"]?.contains("1 of 1 backups of web01 verified are damaged") == true, "\(run.record)")
        #expect(!store.contains(shared), "quarantined")
        let history = FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0]
        #expect(history.newestBackup == nil && history.consecutiveFailures == 0, "not good; not a backup's failure")
    }

    /// The work is bounded: chunks found good within the period are not read again, whichever backup
    /// or VM they belong to; after the period they are.
    @Test func aChunkVerifiedWithinThePeriodIsNotReadAgain() throws {
        let h = try harness(days: 3)
        _ = try h.goodBackup()
        let store = ChunkStore(storage: h.configuration.main.backupStorage)
        let log = ChunkVerifiedLog(store: store)
        #expect(try runVerifyJob(h).record["status"] == "done")
        #expect(log.verified(within: 3).count == 3, "all three chunks read once")
        #expect(try h.backup().result["status"] == "done")  // a second backup of the same chunks
        // The shared chunk rots now; within the period it is trusted and not read.
        var bytes = try #require(FileManager.default.contents(atPath: store.chunkPath(shared)))
        bytes[bytes.count / 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: store.chunkPath(shared)))
        let verify = ScheduledVerify(configuration: h.configuration, logger: Logger(label: "v"))
        #expect(verify.due(h.vm).count == 1, "only the new backup")
        _ = try verify.run(vm: h.vm, abort: AbortFlag())
        #expect(store.contains(shared), "not read again within the period")
        // Four days later both backups are due and every chunk is read: the damage is found.
        let later = Date().addingTimeInterval(4 * 86400)
        #expect(verify.due(h.vm, now: later).count == 2)
        #expect(throws: VerifyFailure.self) { try verify.run(vm: h.vm, now: later, abort: AbortFlag()) }
        #expect(!store.contains(shared))
    }
}
