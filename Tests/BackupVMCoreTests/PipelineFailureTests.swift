import Foundation
import Testing

@testable import BackupVMCore

/// A failure injected in each stage of the backup, through the scripted hypervisor: every one must
/// leave the VM in its prior state, no snapshot of ours, nothing partial, the earlier backup intact
/// and the reason in the job's record (PipelineHarness.expectNothingLost).
@Suite("pipeline: a failure in every stage loses nothing", .tags(.unit))
struct PipelineFailureTests {
    typealias Call = ScriptedHypervisor.Call

    /// A harness with one good backup already made, then `failing` injected at its Nth occurrence.
    /// With `always`, every later call of that kind fails too (a real failure does not go away when
    /// the call is retried).
    func failing(
        _ call: Call, at occurrence: Int = 1, always: Bool = false, vm: ScriptedHypervisor = ScriptedVMs.lvm(),
        mode: SnapshotMode = .hot, profile: String = ""
    ) throws -> (PipelineHarness, BackupSnapshot) {
        let h = try PipelineHarness(vm, mode: mode, profile: profile)
        let earlier = try h.goodBackup()
        if always {
            h.hypervisor.failAlways(call)
        } else {
            h.hypervisor.fail(call, at: h.hypervisor.count(call) + occurrence)
        }
        return (h, earlier)
    }

    /// A failed thaw: no snapshot of ours, nothing partial, the VM marked, earlier backups intact.
    func expectMarkedAfterFailedThaw(
        _ h: PipelineHarness, earlier: BackupSnapshot, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(h.hypervisor.snapshots.isEmpty, sourceLocation: sourceLocation)
        #expect(
            !h.storageEntries.contains(where: BackupNames.isTemporary), "\(h.storageEntries)",
            sourceLocation: sourceLocation)
        #expect(
            h.storageEntries.contains(AttentionMark.fileName), "the VM is marked for attention",
            sourceLocation: sourceLocation)
        #expect(try BackupSnapshot(h.store.catalog.backups(of: h.vm)) == earlier, sourceLocation: sourceLocation)
    }

    // MARK: - prepare

    @Test("prepare: the leftover-snapshot query fails: the VM is never touched")
    func prepareFails() throws {
        let (h, earlier) = try failing(.leftoverSnapshots)
        let saves = h.hypervisor.count(.save)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of leftoverSnapshots")
        #expect(h.hypervisor.count(.save) == saves)
    }

    // MARK: - freeze

    @Test("freeze, hot: virsh save fails: the VM keeps running")
    func saveFails() throws {
        let (h, earlier) = try failing(.save)
        try h.expectNothingLost(try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of save")
    }

    @Test("freeze, cold: the guest ignores ACPI and ForceOff is off: it keeps running, the reason says what to do")
    func shutdownTimesOut() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .cold)
        let earlier = try h.goodBackup()
        h.hypervisor.obeysACPI = false
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier,
            reason: "did not shut down within 1 s of the ACPI request")
        #expect(h.hypervisor.count(.destroy) == 0, "never forced off without ForceOff=yes")
    }

    @Test("freeze, cold: the ACPI request itself fails")
    func shutdownFails() throws {
        let (h, earlier) = try failing(.shutdown, vm: ScriptedVMs.files(), mode: .cold)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of shutdown")
    }

    @Test("freeze, paused VM: its RAM is saved; a failure later restores it paused")
    func pausedStaysPaused() throws {
        let (h, earlier) = try failing(.copyImage, vm: ScriptedVMs.files(.paused), mode: .cold)
        try h.expectNothingLost(
            try h.backup(), prior: .paused, earlier: earlier, reason: "injected failure of copyImage")
        #expect(h.hypervisor.count(.start) == 0)
    }

    @Test("shut-off VM: a failure leaves it off, never started")
    func shutOffStaysOff() throws {
        let (h, earlier) = try failing(.copyImage, vm: ScriptedVMs.lvm(.shutOff), mode: .hot)
        try h.expectNothingLost(
            try h.backup(), prior: .shutOff, earlier: earlier, reason: "injected failure of copyImage")
        #expect(h.hypervisor.count(.start) == 0 && h.hypervisor.count(.restore) == 0)
    }

    // MARK: - snapshot

    @Test("snapshot: the second lvcreate fails: the first snapshot goes, the VM is restored from its RAM")
    func snapshotFails() throws {
        let (h, earlier) = try failing(.createSnapshot, at: 2)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of createSnapshot")
    }

    // MARK: - copy while stopped

    @Test("copy while stopped: the stream of a file disk fails: the VM is started again")
    func stoppedCopyFails() throws {
        let (h, earlier) = try failing(.copyImage, at: 2, vm: ScriptedVMs.files(), mode: .cold)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of copyImage")
    }

    // MARK: - thaw

    @Test("thaw, hot: virsh restore fails: loud failure naming the RAM file, which is kept; snapshots removed")
    func restoreFails() throws {
        let (h, earlier) = try failing(.restore, always: true)
        let run = try h.backup()
        guard case .failed(let reason) = run.outcome else {
            Issue.record("expected a failure, got \(run.outcome)")
            return
        }
        #expect(
            reason.hasPrefix("ATTENTION: web01 on kvm1 could not be returned to its prior state (running)"), "\(reason)"
        )
        let kept = h.hypervisor.paths.filter { $0.hasSuffix("/ram.save") }
        #expect(kept.count == 1, "the RAM state stays: \(h.hypervisor.paths)")
        #expect(reason.contains("its RAM state is kept in \(kept.first ?? "?") on kvm1"), "\(reason)")
        try expectMarkedAfterFailedThaw(h, earlier: earlier)
    }

    @Test("thaw, hot: virsh restore fails once: retried on the way out, the VM runs, the job fails with the reason")
    func restoreFailsOnce() throws {
        let (h, earlier) = try failing(.restore)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of restore")
    }

    @Test("thaw, cold: virsh start fails: loud failure, nothing partial, earlier backups intact")
    func startFails() throws {
        let (h, earlier) = try failing(.start, always: true, vm: ScriptedVMs.lvm(), mode: .cold)
        let run = try h.backup()
        #expect(run.result["reason"]?.hasPrefix("ATTENTION: web01 on kvm1 could not be returned") == true)
        #expect(run.result["reason"]?.contains("injected failure of start") == true)
        try expectMarkedAfterFailedThaw(h, earlier: earlier)
    }

    // MARK: - copy the snapshots

    @Test("copy snapshots: the stream of a snapshot fails: snapshots removed, VM running")
    func snapshotCopyFails() throws {
        let (h, earlier) = try failing(.copyImage)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of copyImage")
    }

    @Test("copy snapshots: a snapshot overflowed during the copy: the backup fails as overflowed")
    func snapshotOverflows() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let earlier = try h.goodBackup()
        h.hypervisor.onCall(.copyImage) {
            for s in h.hypervisor.snapshots { h.hypervisor.overflowed.insert(s.fullName) }
        }
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier,
            reason: "snapshot overflowed: vg0/web01-bvmsnap-")
    }

    @Test("copy the RAM state: its stream fails: VM running, nothing partial")
    func ramCopyFails() throws {
        let (h, earlier) = try failing(.copyImage, at: 3)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of copyImage")
    }

    @Test("abort during the copy: rolled back, the job fails as aborted")
    func aborted() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let earlier = try h.goodBackup()
        let abort = AbortFlag()
        h.hypervisor.onCall(.restore) { abort.raise() }
        try h.expectNothingLost(
            try h.backup(abort: abort), prior: .running, earlier: earlier, reason: "aborted on request")
    }

    // MARK: - cleanup

    @Test("cleanup: lvremove fails once: the job fails with the reason and the retry removes the snapshot")
    func snapshotRemovalFailsOnce() throws {
        let (h, earlier) = try failing(.removeSnapshot)
        try h.expectNothingLost(
            try h.backup(), prior: .running, earlier: earlier, reason: "injected failure of removeSnapshot")
    }

    // MARK: - commit

    @Test("commit: the final name is taken at the last moment: nothing partial, earlier backup intact")
    func commitFails() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .cold)
        let earlier = try h.goodBackup()
        let store = h.store
        let vm = h.vm
        h.hypervisor.onCall(.copyImage) {
            // The ID the running backup got: its partial directory's name.
            let names = (try? FileManager.default.contentsOfDirectory(atPath: store.vmDirectory(vm))) ?? []
            for name in names where BackupNames.isPartial(name) {
                let id = String(name.dropFirst().dropLast(".partial".count))
                let final = store.layout.backupDirectory(vm, id: id)
                try? FileManager.default.createDirectory(atPath: final + "/squatter", withIntermediateDirectories: true)
            }
        }
        let run = try h.backup()
        #expect(run.result["reason"]?.contains("rename into place") == true, "\(run.result)")
        #expect(h.hypervisor.vmState == .running && h.hypervisor.snapshots.isEmpty)
        #expect(!h.storageEntries.contains { $0.hasPrefix(".") }, "\(h.storageEntries)")
        #expect(h.hypervisor.paths.filter { $0.hasPrefix(h.work.directory + "/.") }.isEmpty)
        #expect(
            try BackupSnapshot(h.store.catalog.backups(of: h.vm)).files.filter { earlier.files[$0.key] != nil }.count
                == earlier.files.count, "the earlier backup is untouched")
    }

    // MARK: - after the commit

    @Test("#18: keep on host fails after the commit: the job is done with a warning, rotation still runs")
    func keepOnHostFails() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot, keep: 1, keepOnHost: true)
        let earlier = try h.goodBackup()
        h.hypervisor.fail(.keepStagedCopy, at: 2)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(run.result["warning"]?.contains("injected failure of keepStagedCopy") == true, "\(run.result)")
        #expect(h.hypervisor.vmState == .running && h.hypervisor.snapshots.isEmpty)
        let now = try BackupSnapshot(h.store.catalog.backups(of: h.vm))
        #expect(now.ids.count == 1 && now.ids.isDisjoint(with: earlier.ids), "rotated to the new backup (keep=1)")
    }

    @Test("#18: rotation fails: the job is done with a warning, and no backup is lost")
    func rotationFails() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), keep: 1)
        let earlier = try h.goodBackup()
        let oldest = try #require(earlier.ids.first)
        // A half-deleted copy of the oldest backup is in the way of its removal.
        try FileManager.default.createDirectory(
            atPath: h.store.layout.deletingDirectory(h.vm, id: oldest) + "/x", withIntermediateDirectories: true)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(run.result["warning"]?.contains("rename for removal") == true, "\(run.result)")
        #expect(h.hypervisor.vmState == .running)
        #expect(try BackupSnapshot(h.store.catalog.backups(of: h.vm)).ids.count == 2)
    }

    /// Found in the sweep of issue #19: a manifest rotation could not read sorted as the oldest
    /// backup (sequence 0) and was removed first, whichever backup it was.
    @Test("rotation meets a manifest it cannot read: it stops, nothing is removed")
    func rotationStopsAtAnUnreadableManifest() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), keep: 2)
        _ = try h.goodBackup()
        _ = try h.goodBackup()
        let newest = try #require(h.store.catalog.newestBackup(of: h.vm))
        try Data("{ damaged".utf8).write(to: URL(fileURLWithPath: newest.path + "/manifest"))
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(run.result["warning"]?.contains("rotation of web01 stopped") == true, "\(run.result)")
        #expect(h.store.catalog.backups(of: h.vm).contains { $0.id == newest.id }, "the unreadable one is kept")
        #expect(h.store.catalog.backups(of: h.vm).count == 3)
    }
}

/// A worker that dies between two stages (SIGKILL, power loss) runs no cleanup of its own: the next
/// start's recovery reads the breadcrumb and must bring the VM back, remove our snapshots, the staged
/// copy and the partial backup. Here each stage boundary in turn, for a hot and a cold backup.
@Suite("pipeline: recovery after a worker died at every stage boundary", .tags(.unit))
struct PipelineRecoveryTests {
    static let stages: [(name: String, run: @Sendable (BackupRun) throws -> Void)] = [
        ("prepare", { try $0.prepare() }),
        ("freeze", { try $0.freeze() }),
        ("snapshot", { try $0.takeSnapshots() }),
        ("copy while stopped", { try $0.copyStoppedDisks() }),
        ("thaw", { try $0.thaw() }),
        ("copy snapshots", { try $0.copySnapshots() }),
        ("copy RAM state", { try $0.copyRAMState() }),
    ]

    @Test(arguments: [SnapshotMode.hot, .cold], 1...stages.count)
    func diesAfterStage(mode: SnapshotMode, completed: Int) throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: mode)
        let earlier = try h.goodBackup()
        let id = h.store.newID(vm: h.vm, started: Date())
        let plan = try BackupPlanner(configuration: h.configuration).plan(vm: h.vm, id: id, on: h.hypervisor)
        let run = BackupRun(
            plan: plan, hypervisor: h.hypervisor, store: h.store, compression: .lzop, abort: AbortFlag(),
            log: h.pipeline.logger, started: Date(), pollInterval: 0.01)
        for stage in Self.stages.prefix(completed) { try stage.run(run) }
        let last = Self.stages[completed - 1].name

        let note = try h.pipeline.recover(vm: h.vm, jobName: "dead-worker")
        #expect(h.hypervisor.vmState == .running, "after \(last): \(note)")
        #expect(h.hypervisor.snapshots.isEmpty, "after \(last): \(h.hypervisor.snapshots)")
        #expect(h.hypervisor.paths.filter { $0.hasPrefix(h.work.directory + "/.") }.isEmpty, "after \(last)")
        #expect(!h.storageEntries.contains { $0.hasPrefix(".") }, "after \(last): \(h.storageEntries)")
        #expect(try BackupSnapshot(h.store.catalog.backups(of: h.vm)) == earlier, "after \(last)")
        #expect(note.contains("partial backup .\(id).partial removed"), "\(note)")
    }

    @Test("#4: the worker died after the thaw, then the VM was shut down: recovery does not replay old RAM")
    func noStaleRAMReplay() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let id = h.store.newID(vm: h.vm, started: Date())
        let plan = try BackupPlanner(configuration: h.configuration).plan(vm: h.vm, id: id, on: h.hypervisor)
        let run = BackupRun(
            plan: plan, hypervisor: h.hypervisor, store: h.store, compression: .lzop, abort: AbortFlag(),
            log: h.pipeline.logger, started: Date(), pollInterval: 0.01)
        for stage in Self.stages.prefix(6) { try stage.run(run) }  // through "copy snapshots"
        h.hypervisor.vmState = .shutOff  // an operator shut it down hours later
        let restores = h.hypervisor.count(.restore)
        let note = try h.pipeline.recover(vm: h.vm, jobName: "dead-worker")
        #expect(h.hypervisor.count(.restore) == restores, "the hours-old RAM state was not restored")
        #expect(h.hypervisor.vmState == .shutOff && h.hypervisor.snapshots.isEmpty)
        #expect(note.contains("already back in running"), "\(note)")
    }

    @Test("a breadcrumb naming a host that is not configured is not acted on")
    func breadcrumbWithUnknownHost() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let id = "20261127T000000Z"
        let partial = try h.store.beginBackup(vm: h.vm, id: id)
        try JobBreadcrumb(
            id: id, host: "elsewhere", priorState: "running", remoteStageDir: h.work.stagingDirectory(id),
            remoteRAMFile: nil
        ).write(into: partial)
        #expect(throws: RecoveryError.unknownHost(vm: h.vm, host: "elsewhere")) {
            _ = try h.pipeline.recover(vm: h.vm, jobName: "x")
        }
        #expect(h.hypervisor.calls.isEmpty, "nothing was done on its word")
    }

    /// Found in the sweep of issue #19: a breadcrumb that could not be parsed was taken as none, and
    /// the partial backup (with the record of a VM left shut off or snapshotted) was removed.
    @Test("a breadcrumb that cannot be read fails the recovery loudly and keeps the partial backup")
    func unreadableBreadcrumb() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let partial = try h.store.beginBackup(vm: h.vm, id: "20261127T000000Z")
        try Data("{\"id\": \"20261127T0".utf8).write(to: URL(fileURLWithPath: partial + "/job-state.json"))
        #expect {
            _ = try h.pipeline.recover(vm: h.vm, jobName: "x")
        } throws: { "\($0)".contains("cannot be read") && "\($0)".contains("check web01") }
        #expect(FileManager.default.fileExists(atPath: partial + "/job-state.json"), "the record is kept")
        #expect(h.hypervisor.calls.isEmpty)
    }
}

/// The VM-state findings of issue #9 (2, 3, 4), through the seam; each failed before its fix.
@Suite("pipeline: the VM's state is never guessed", .tags(.unit))
struct PipelineStateTests {
    @Test("#2: libvirtd restarting at thaw time: the state query is retried and the VM comes back")
    func stateQueryRetried() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        h.hypervisor.fail(.state, at: 1)
        h.hypervisor.fail(.state, at: 2)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.vmState == .running)
    }

    @Test("#2: virsh keeps failing at thaw: the job fails loudly, the RAM file is kept, nothing reads as 'off'")
    func stateQueryFailsForGood() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        h.hypervisor.failAlways(.state)
        let run = try h.backup()
        #expect(
            run.result["reason"]?.hasPrefix("ATTENTION: web01 on kvm1 could not be returned") == true, "\(run.result)")
        #expect(h.hypervisor.paths.contains { $0.hasSuffix("/ram.save") }, "the RAM state is kept")
        #expect(h.hypervisor.count(.removeStagedCopies) == 0 && h.hypervisor.count(.keepStagedCopy) == 0)
    }

    @Test("#2: the domain is gone at thaw time: a loud failure, not 'done'")
    func vanishedAtThaw() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        h.hypervisor.onCall(.createSnapshot) { h.hypervisor.vmState = nil }
        let run = try h.backup()
        #expect(run.result["status"] == "failed")
        #expect(run.result["reason"]?.contains("disappeared from kvm1") == true, "\(run.result)")
    }

    @Test("#3: after a failed thaw the VM stays marked: no backup, no recovery, no sweep until resolved")
    func failedThawMarksTheVM() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        h.hypervisor.failAlways(.restore)
        let first = try h.backup()
        #expect(first.result["reason"]?.contains("backup_vm resolve web01") == true, "\(first.result)")
        let ram = try #require(h.hypervisor.paths.first { $0.hasSuffix("/ram.save") })
        let callsBefore = h.hypervisor.calls.count

        let second = try h.backup()
        #expect(second.result["reason"]?.contains("ATTENTION: web01 needs attention") == true, "\(second.result)")
        #expect(second.result["reason"]?.contains("virsh restore \(ram)") == true)
        #expect(throws: PipelineError.self) { _ = try h.pipeline.recover(vm: h.vm, jobName: "x") }
        #expect(h.hypervisor.calls.count == callsBefore, "nothing was asked of the hypervisor")
        #expect(h.hypervisor.paths.contains(ram), "the saved RAM state is still there")
        #expect(h.hypervisor.vmState == .shutOff)

        // The operator brings it back by hand and clears the mark: backups resume.
        h.hypervisor.heal(.restore)
        try h.hypervisor.restore(from: ram, paused: false)
        let cleared = try AttentionMark.clear(storage: h.store.layout, vm: h.vm)
        #expect(cleared != nil)
        #expect(try h.backup().result["status"] == "done")
    }
}

extension PipelineStateTests {
    @Test("#10: a slow guest that goes off just after ShutdownTimeout is started again, not left off")
    func slowShutdownAfterTimeout() throws {
        let hv = ScriptedVMs.files()
        let h = try PipelineHarness(hv)
        let earlier = try h.goodBackup()
        // ShutdownTimeout=1 s; the guest takes 1.3 s.
        hv.offAfterSeconds = 1.3
        let run = try h.backup()
        Thread.sleep(forTimeInterval: 0.5)  // it would be off by now had it been left alone
        try h.expectNothingLost(run, prior: .running, earlier: earlier, reason: "did not shut down within 1 s")
        #expect(hv.count(.start) == 2, "started again after it went off")
        #expect(h.messages.contains("went off after all"))
    }
}
