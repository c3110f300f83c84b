import Foundation
import Testing

@testable import BackupVMCore

/// Mode=live through the hypervisor seam: the VM is never stopped, every disk is read from the
/// backup job's exports, and every path ends the job, thaws the file systems and removes the job's
/// directory (issue #10). The lab tier (LabLiveTests) shows the same on real libvirt.
@Suite("live backups through the hypervisor seam", .tags(.unit))
struct LiveBackupTests {
    static let touchesVM: Set<ScriptedHypervisor.Call> = [
        .shutdown, .destroy, .start, .save, .restore, .createSnapshot,
    ]

    func manifest(_ h: PipelineHarness) throws -> Manifest {
        let backup = try #require(h.store.catalog.newestBackup(of: h.vm))
        return try Manifest.read(backupDirectory: backup.path)
    }

    @Test("file disks, no guest agent: sysrq sync, begin, both exports copied, job ended; downtime 0, crash")
    func fileDisksCrashConsistent() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        let relevant: Set<ScriptedHypervisor.Call> = [
            .sendEmergencySync, .beginBackupJob, .thawFilesystems, .copyExport, .endBackupJob,
        ]
        #expect(
            h.hypervisor.calls.filter { relevant.contains($0) }
                == [.beginBackupJob, .copyExport, .copyExport, .endBackupJob])
        #expect(h.hypervisor.calls.filter { Self.touchesVM.contains($0) }.isEmpty, "\(h.hypervisor.calls)")
        #expect(h.hypervisor.vmState == .running && h.hypervisor.jobDirectory == nil)
        #expect(h.messages.contains("crash-consistent backup, after the sysrq emergency sync"))
        let m = try manifest(h)
        #expect(m.mode == .live && m.requestedMode == .live && m.downtimeSeconds == 0)
        #expect(m.consistency == .crash && m.formatVersion == 4)
        #expect(m.disks.map(\.file) == ["vda.raw.lzo", "vdb.raw.lzo"])
        #expect(m.disks.map(\.format) == [.raw, .qcow2] && m.disks.map(\.content) == [.raw, .raw])
        #expect(h.hypervisor.paths.isEmpty, "nothing left in the working path: \(h.hypervisor.paths)")
    }

    @Test("with a guest agent: frozen and thawed around the begin; consistency application, the frozen time")
    func agentQuiesces() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.count(.thawFilesystems) == 0, "the begin thawed them itself")
        #expect(!h.hypervisor.frozen)
        let m = try manifest(h)
        #expect(m.consistency == .application && m.quiesceSeconds == 0.12)
        #expect(h.messages.contains("file systems frozen by the guest agent for the begin"))
    }

    @Test("LVs: read from the exports, no snapshot LV, no save; the manifest records each LV")
    func lvsWithoutSnapshots() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .live)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.calls.filter { Self.touchesVM.contains($0) }.isEmpty, "\(h.hypervisor.calls)")
        #expect(h.hypervisor.count(.copyExport) == 2 && h.hypervisor.count(.leftoverSnapshots) == 1)
        let m = try manifest(h)
        #expect(m.disks.map(\.volume) == ["vg0/web01", "vg0/web01-data"])
    }

    @Test("a copy that fails: the job is ended, the file systems thawed, nothing partial, older backups kept")
    func copyFails() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        let earlier = try h.goodBackup()
        h.hypervisor.fail(.copyExport, at: 4)
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: earlier, reason: "injected failure of copyExport")
        #expect(h.hypervisor.jobDirectory == nil && !h.hypervisor.frozen)
        #expect(h.hypervisor.calls.filter { Self.touchesVM.contains($0) }.isEmpty)
    }

    @Test("a begin that fails: the job's directory removed, VM running")
    func beginFails() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        h.hypervisor.fail(.beginBackupJob, at: 1)
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: nil, reason: "injected failure of beginBackupJob")
        #expect(!h.hypervisor.frozen && h.hypervisor.count(.endBackupJob) == 1)
    }

    @Test("a thaw that keeps failing after the begin: retried, then the VM is marked for attention, the job ended")
    func thawFails() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        h.hypervisor.failAlways(.thawFilesystems)
        let run = try h.backup()
        guard case .failed(let why) = run.outcome else {
            Issue.record("expected a failure, got \(run.outcome)")
            return
        }
        #expect(why.contains("injected failure of thawFilesystems"), "\(why)")
        #expect(h.hypervisor.count(.thawFilesystems) >= 3, "retried")
        #expect(h.hypervisor.jobDirectory == nil, "the job was ended all the same")
        #expect(AttentionMark.read(storage: h.store.layout, vm: h.vm) != nil)
    }

    @Test("a leftover job of ours (a worker died before recovery) is ended, then the backup runs")
    func staleJobOfOurs() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let stale = h.work.liveDirectory("20261101T000000Z")
        h.hypervisor.addJob(directory: stale)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.count(.beginBackupJob) == 2 && h.hypervisor.jobDirectory == nil)
        #expect(h.messages.contains("ending a leftover backup job of an earlier run"))
    }

    @Test("a backup job someone else started is left alone and named")
    func foreignJob() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.addForeignJob(socket: "/var/lib/other-tool/web01.sock")
        let run = try h.backup()
        try h.expectNothingLost(
            run, prior: .running, earlier: nil, reason: "a backup job that backup_vm did not start runs on web01")
        #expect(h.hypervisor.count(.copyExport) == 0)
    }

    @Test("a host without the backup API: fails naming what is missing; LiveFallback=cold backs up cold")
    func unsupportedHost() throws {
        let missing = LiveSupport(libvirt: "6.0.0", qemu: "4.2.1", missing: ["libvirt ≥ 7.2", "nbdcopy"])
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.live = missing
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: nil, reason: "Mode=live for web01 needs on kvm1")
        #expect(h.hypervisor.calls.filter { Self.touchesVM.contains($0) }.isEmpty)

        let f = try PipelineHarness(ScriptedVMs.files(), mode: .live, profile: "LiveFallback=cold")
        f.hypervisor.live = missing
        let fallback = try f.backup()
        #expect(fallback.result["status"] == "done", "\(fallback.result)")
        let m = try manifest(f)
        #expect(m.mode == .cold && m.requestedMode == .live)
        #expect(m.modeNote?.contains("LiveFallback=cold") == true, "\(m.modeNote ?? "")")
        #expect(f.hypervisor.count(.shutdown) >= 1 && f.hypervisor.count(.beginBackupJob) == 0)
    }

    @Test("a paused or shut-off VM is backed up cold (nothing writes to its disks)")
    func notRunning() throws {
        let h = try PipelineHarness(ScriptedVMs.files(.shutOff), mode: .live)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(try manifest(h).mode == .cold && h.hypervisor.count(.beginBackupJob) == 0)
    }

    @Test("Mode=hot on file disks says that Mode=live exists")
    func hotMentionsLive() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .hot)
        _ = try h.backup()
        #expect(try manifest(h).modeNote?.contains("Mode=live") == true)
    }

    @Test("the worker died mid-copy: recovery thaws, ends the job, removes its directory; the VM runs on")
    func recoveryEndsTheJob() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        let id = h.store.newID(vm: h.vm, started: Date())
        let plan = try BackupPlanner(configuration: h.configuration).plan(vm: h.vm, id: id, on: h.hypervisor)
        let run = BackupRun(
            plan: plan, hypervisor: h.hypervisor, store: h.store, compression: .lzop, abort: AbortFlag(),
            log: h.pipeline.logger, started: Date(), pollInterval: 0.01)
        try run.prepare()
        let job = try run.startLiveJob()
        #expect(h.hypervisor.jobDirectory == job.directory)
        let note = try h.pipeline.recover(vm: h.vm, jobName: "dead-worker")
        #expect(h.hypervisor.jobDirectory == nil && !h.hypervisor.frozen, "\(note)")
        #expect(h.hypervisor.count(.thawFilesystems) == 1, "recovery thaws (harmless when nothing is frozen)")
        #expect(h.hypervisor.vmState == .running && h.hypervisor.calls.filter { Self.touchesVM.contains($0) }.isEmpty)
        #expect(h.hypervisor.paths.filter { $0.hasPrefix(h.work.directory + "/.") }.isEmpty)
        #expect(note.contains("live backup job ended"), "\(note)")
    }
}

/// Issue #19 items 7-9 through the seam: the scratch space of a live job (checked before the begin,
/// watched during the copy), a guest that qemu paused, a job that cannot be ended, FreezeTimeout.
@Suite("live backups: scratch space, paused guests, stranded jobs, FreezeTimeout", .tags(.unit))
struct LiveJobFaultTests {
    /// At the first copy, `body` runs on the copy's thread; the copy then waits (10 s at most) for
    /// the watch to end the job, as nbdcopy's export would go away under it.
    func duringCopy(_ h: PipelineHarness, _ body: @escaping @Sendable () -> Void) {
        let hypervisor = h.hypervisor
        let first = hypervisor.count(.copyExport) + 1
        hypervisor.onCall(.copyExport) {
            guard hypervisor.count(.copyExport) == first else { return }
            body()
            _ = eventually(timeout: 10) { hypervisor.jobDirectory == nil }
        }
    }

    func failure(_ run: (outcome: JobOutcome, result: [String: String])) -> String {
        guard case .failed(let why) = run.outcome else { return "not failed: \(run.outcome)" }
        return why
    }

    @Test("no room for the scratch files' worst case: refused before the begin; nothing frozen, the VM untouched")
    func noScratchRoom() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.hasAgent = true
        h.hypervisor.scratchAvailable = 1 << 30  // two disks may need 1 GiB each
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: nil, reason: "no room for the live backup job of web01")
        #expect(failure(run).contains("may grow to 2.0 GiB") && failure(run).contains("1.0 GiB free"))
        #expect(h.hypervisor.count(.copyExport) == 0 && !h.hypervisor.frozen && h.hypervisor.jobDirectory == nil)
        #expect(h.hypervisor.calls.filter { LiveBackupTests.touchesVM.contains($0) }.isEmpty)
        #expect(h.hypervisor.requests.first?.disks.map(\.target) == ["vda", "vdb"])
    }

    @Test("the scratch file system runs low during the copy (someone else writes there): the job is ended at once")
    func scratchRunsLow() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let earlier = try h.goodBackup()
        let hypervisor = h.hypervisor
        // 10 MiB beyond the jobs' worst case are left: under ScratchRoom.floor.
        duringCopy(h) { hypervisor.scratchAvailable = 2 * hypervisor.scratchNeedPerDisk + (10 << 20) }
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: earlier, reason: "ran low during the copy")
        #expect(h.hypervisor.count(.copyExport) == 3, "ended during the first disk's copy, vdb never read")
        #expect(h.hypervisor.jobDirectory == nil && h.hypervisor.count(.resume) == 0)
        #expect(h.messages.contains("the scratch file system of the live backup job runs low: ending the job"))
    }

    @Test("qemu pauses the guest on a failed write during the copy: the job is ended, then the guest resumed; failed")
    func pausedDuringCopy() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let hypervisor = h.hypervisor
        duringCopy(h) { hypervisor.pauseByIOError() }
        let run = try h.backup()
        try h.expectNothingLost(
            run, prior: .running, earlier: nil, reason: "qemu paused web01 on kvm1 during its live backup")
        #expect(failure(run).contains("paused (I/O error)") && failure(run).contains("resumed"))
        #expect(h.hypervisor.count(.copyExport) == 1, "ended during the first disk's copy, not after the copy")
        let calls = h.hypervisor.calls
        let end = try #require(calls.firstIndex(of: .endBackupJob))
        let resume = try #require(calls.firstIndex(of: .resume))
        #expect(end < resume, "ended first: a guest resumed under the job would fail its write again")
        #expect(AttentionMark.read(storage: h.store.layout, vm: h.vm) == nil)
    }

    @Test(
        "the watch's end is refused at first (libvirt's lock held while a paused qemu drains a stalled reader): tried again, then the guest resumed"
    )
    func watchTriesAgain() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let hypervisor = h.hypervisor
        hypervisor.fail(.endBackupJob, at: 1)
        hypervisor.fail(.endBackupJob, at: 2)
        duringCopy(h) { hypervisor.pauseByIOError() }
        let run = try h.backup()
        try h.expectNothingLost(
            run, prior: .running, earlier: nil, reason: "qemu paused web01 on kvm1 during its live backup")
        #expect(failure(run).contains("resumed (its failed write retried"), "\(failure(run))")
        #expect(h.hypervisor.count(.copyExport) == 1, "the job was ended while the copy ran")
        #expect(AttentionMark.read(storage: h.store.layout, vm: h.vm) == nil)
    }

    @Test("a guest paused when the copy is done is found by the check after the job: resumed, and the job never done")
    func pausedAtTheEnd() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let hypervisor = h.hypervisor
        hypervisor.onCall(.endBackupJob) { hypervisor.pauseByIOError() }
        let run = try h.backup()
        try h.expectNothingLost(
            run, prior: .running, earlier: nil, reason: "qemu paused web01 on kvm1 during its live backup")
        #expect(h.hypervisor.count(.resume) == 1 && h.hypervisor.vmState == .running)
    }

    @Test("a paused guest that cannot be resumed: the backup fails naming it and the VM is marked for attention")
    func pausedAndNotResumed() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let hypervisor = h.hypervisor
        hypervisor.failAlways(.resume)
        duringCopy(h) { hypervisor.pauseByIOError() }
        let run = try h.backup()
        #expect(failure(run).contains("could not be resumed") && failure(run).contains("virsh resume web01"))
        #expect(AttentionMark.read(storage: h.store.layout, vm: h.vm) != nil)
        #expect(h.hypervisor.jobDirectory == nil)
    }

    @Test("a guest paused whose job cannot be ended stays paused: the failure tells both, the VM is marked")
    func pausedAndStranded() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let hypervisor = h.hypervisor
        hypervisor.failAlways(.endBackupJob)
        hypervisor.onCall(.endBackupJob) { hypervisor.pauseByIOError() }
        let run = try h.backup()
        #expect(failure(run).contains("could not be resumed") && failure(run).contains("could not be ended"))
        #expect(AttentionMark.read(storage: h.store.layout, vm: h.vm) != nil && h.hypervisor.vmState == .paused)
        #expect(h.pipeline.strandedJobs() == [h.vm], "the breadcrumb is kept for the job")
    }

    @Test("an end that fails twice (libvirtd restarting) is tried again; the backup is good")
    func endRetried() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.fail(.endBackupJob, at: 1)
        h.hypervisor.fail(.endBackupJob, at: 2)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.count(.endBackupJob) == 3 && h.hypervisor.jobDirectory == nil)
    }

    @Test("a job that cannot be ended keeps its breadcrumb; the next backup ends it first, then runs")
    func strandedJobRecovered() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.failAlways(.endBackupJob)
        let run = try h.backup()
        #expect(failure(run).contains("could not be ended") && failure(run).contains("next recovery pass"))
        let stranded = try #require(h.hypervisor.jobDirectory, "the job runs on")
        let partials = h.storageEntries.filter { $0.hasSuffix(".partial") }
        let partial = try #require(partials.first, "the partial directory is kept: \(h.storageEntries)")
        #expect(partials.count == 1, "\(h.storageEntries)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: h.store.vmDirectory(h.vm) + "/" + partial)
        #expect(kept == [BackupNames.breadcrumb], "only the breadcrumb: \(kept)")

        // Still unreachable at the next backup: nothing is begun on top of it.
        let again = try h.backup()
        #expect(failure(again).contains("an earlier backup of web01 left"), "\(again.outcome)")
        #expect(h.hypervisor.count(.beginBackupJob) == 1 && h.hypervisor.jobDirectory == stranded)

        h.hypervisor.heal(.endBackupJob)
        let next = try h.backup()
        #expect(next.result["status"] == "done", "\(next.result)")
        #expect(h.hypervisor.jobDirectory == nil && !h.hypervisor.paths.contains(stranded))
        #expect(!h.storageEntries.contains { $0.hasPrefix(".") }, "\(h.storageEntries)")
        #expect(h.messages.contains("cleaned up what an earlier backup left"))
    }

    @Test("the daemon's recovery pass ends a stranded job once the host answers, and leaves a running job's VM alone")
    func recoveryPassEndsStrandedJob() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        h.hypervisor.failAlways(.endBackupJob)
        _ = try h.backup()
        let stranded = try #require(h.hypervisor.jobDirectory)
        #expect(h.pipeline.strandedJobs() == [h.vm])
        let recovery = h.services.recovery
        #expect(recovery.recoverStranded().isEmpty, "still unreachable: nothing ended, tried again later")
        #expect(h.hypervisor.jobDirectory == stranded && h.pipeline.strandedJobs() == [h.vm])

        h.hypervisor.heal(.endBackupJob)
        // While a job of the VM holds its lock, the pass does not touch it.
        let held = try #require(try h.services.spool.locks.tryAcquireVM(h.vm))
        #expect(recovery.recoverStranded().isEmpty && h.hypervisor.jobDirectory == stranded)
        held.release()
        let notes = recovery.recoverStranded()
        #expect(notes.count == 1 && notes[0].contains("live backup job ended"), "\(notes)")
        #expect(h.hypervisor.jobDirectory == nil && !h.hypervisor.paths.contains(stranded))
        #expect(h.pipeline.strandedJobs().isEmpty && !h.storageEntries.contains { $0.hasPrefix(".") })
    }

    @Test("FreezeTimeout from the begin: thawed again, whatever began is ended, the backup fails naming the key")
    func freezeTimeout() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live, profile: "FreezeTimeout=3")
        h.hypervisor.hasAgent = true
        h.hypervisor.beginError = LiveBackupError.freezeTimeout(vm: "web01", host: "kvm1", seconds: 3)
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: nil, reason: "FreezeTimeout=3 s")
        #expect(h.hypervisor.requests.first?.freezeTimeout == 3)
        #expect(h.hypervisor.count(.thawFilesystems) >= 1 && h.hypervisor.count(.endBackupJob) >= 1)
    }

    @Test("recovery of a dead worker's live job resumes a guest that qemu paused meanwhile")
    func recoveryResumes() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .live)
        let id = h.store.newID(vm: h.vm, started: Date())
        let plan = try BackupPlanner(configuration: h.configuration).plan(vm: h.vm, id: id, on: h.hypervisor)
        let run = BackupRun(
            plan: plan, hypervisor: h.hypervisor, store: h.store, compression: .lzop, abort: AbortFlag(),
            log: h.pipeline.logger, started: Date(), pollInterval: 0.01)
        try run.prepare()
        _ = try run.beginQuiesced(in: plan.work.liveDirectory(id))
        h.hypervisor.pauseByIOError()
        let note = try h.pipeline.recover(vm: h.vm, jobName: "dead-worker")
        #expect(h.hypervisor.vmState == .running && h.hypervisor.jobDirectory == nil, "\(note)")
        #expect(note.contains("resumed"), "\(note)")
    }

    @Test("virsh's state with its reason")
    func conditionText() {
        #expect(DomainCondition(virsh: "paused (I/O error)\n").pausedByIOError)
        #expect(DomainCondition(virsh: "paused (user)") == DomainCondition(state: .paused, reason: "user"))
        #expect(DomainCondition(virsh: "running (booted)").state == .running)
        #expect(DomainCondition(virsh: "shut off").reason.isEmpty)
    }

    @Test("the watch's verdict: room beyond the jobs' worst case under the floor, or a paused guest")
    func verdict() {
        let running = DomainCondition(state: .running, reason: "unpaused")
        var r = ScratchReading(available: 1 << 30, outstanding: 512 << 20, used: 0, condition: running)
        #expect(r.verdict == .fine)
        r.outstanding = (1 << 30) - ScratchRoom.floor + 1
        #expect(r.verdict == .low)
        r.condition = DomainCondition(state: .paused, reason: "I/O error")
        #expect(r.verdict == .paused(DomainCondition(state: .paused, reason: "I/O error")))
    }

    @Test("FreezeTimeout is whole seconds from 1 to 120, default 10")
    func freezeTimeoutParsed() {
        let (p, d) = SnapshotProfile.parse("FreezeTimeout=5\nWorkPath=/w\n", displayName: "default", base: nil)
        #expect(p?.freezeTimeout == 5 && d.isEmpty)
        let (q, _) = SnapshotProfile.parse("WorkPath=/w\n", displayName: "default", base: nil)
        #expect(q?.freezeTimeout == 10)
        let (bad, diagnostics) = SnapshotProfile.parse(
            "WorkPath=/w\nFreezeTimeout=0\n", displayName: "default", base: nil)
        #expect(
            bad == nil
                && diagnostics.map { "\($0)" } == [
                    "default:2: FreezeTimeout='0': expected a whole number from 1 to 120"
                ])
    }
}

/// The pieces of the live path that are pure text: libvirt's answers read, the job's XML written.
@Suite("live backups: virsh's texts", .tags(.unit))
struct LiveBackupTextTests {
    @Test("export names come from backup-dumpxml (as libvirt 9.0 prints it)")
    func exportsFromDumpXML() {
        let xml = """
            <domainbackup mode='pull'>
              <server transport='unix' socket='/w/vm/.20261127T000000Z.live/nbd.sock'/>
              <disks>
                <disk name='vda' backup='yes' type='file' backupmode='full' exportname='vda' index='7'>
                  <driver type='qcow2'/>
                  <scratch file='/w/vm/.20261127T000000Z.live/vda.scratch'/>
                </disk>
                <disk name='vdb' backup='no'/>
              </disks>
            </domainbackup>
            """
        #expect(VirshBackupJob.exports(inDumpXML: xml) == ["vda": "vda"])
    }

    @Test("the job's XML lists every disk, with its scratch file in our directory, escaped")
    func backupXML() {
        let xml = VirshBackupJob.backupXML(directory: "/w/a&b/.X.live", targets: ["vda"], excluded: ["vdb"])
        #expect(xml.contains("socket=\"/w/a&amp;b/.X.live/nbd.sock\""))
        #expect(
            xml.contains(
                "<disk name=\"vda\" backup=\"yes\" type=\"file\"><scratch file=\"/w/a&amp;b/.X.live/vda.scratch\"/>"))
        #expect(xml.contains("<disk name=\"vdb\" backup=\"no\"/>"))
    }

    @Test("what a host lacks for live backups, from its versions and tools")
    func supportFromProbe() {
        let good = LiveSupport(probeOutput: "livelibvirt 9.0.0\nliveqemu 7.2.22\n")
        #expect(good.isAvailable && good.libvirt == "9.0.0" && good.qemu == "7.2.22")
        let old = LiveSupport(probeOutput: "livelibvirt 7.0.0\nliveqemu 5.2.0\nlivemissing nbdcopy\n")
        #expect(old.missing.count == 3, "\(old.missing)")
        #expect(old.missing.contains { $0.contains("libnbd-bin") })
        #expect(LiveSupport(probeOutput: "livelibvirt 10.1.0\nliveqemu 6.0.0\n").isAvailable)
        #expect(!LiveSupport(probeOutput: "").isAvailable, "no virsh answer: not available")
    }

    @Test("a socket path over 107 bytes is refused before anything runs on the host")
    func socketTooLong() {
        let host = RemoteHost(name: "nowhere.invalid", sshConfig: nil, connectTimeout: 1, sshProgram: "/bin/false")
        let long = "/" + String(repeating: "w", count: 100) + "/.20261127T000000Z.live"
        #expect(throws: LiveBackupError.socketPathTooLong(path: long + "/nbd.sock")) {
            _ = try VirshBackupJob(host: host).begin(
                LiveJobRequest(
                    vm: "web01", directory: long,
                    disks: [DomainDisk(target: "vda", kind: .file, format: .raw, source: "/i/a")],
                    excluded: [], quiesce: true, freezeTimeout: 10))
        }
    }

    @Test("the nbd URI percent-encodes the socket path")
    func uri() {
        let job = LiveJob(directory: "/w/my vm/.X.live", exports: [:])
        #expect(job.uri(export: "vda") == "nbd+unix:///vda?socket=/w/my%20vm/.X.live/nbd.sock")
    }

    @Test("a qcow2 disk stored raw is restored through a sparse raw file and qemu-img convert")
    func restoreConvertsBack() {
        var image = Manifest.StoredImage(
            target: "vdb", source: "/i/v.qcow2", kind: .file, format: .qcow2, file: "vdb.raw.lzo", rawBytes: 1 << 20,
            storedBytes: 10, storedCksum: 1, storedSHA256: "x")
        #expect(!ImageWriter.fileScript(image, to: "/i/v.qcow2", temporary: "/i/t").contains("qemu-img"))
        image.content = .raw
        let script = ImageWriter.fileScript(image, to: "/i/v.qcow2", temporary: "/i/t")
        #expect(script.contains("qemu-img convert -f raw -O qcow2 \"$tmp.raw\" \"$tmp\""))
        #expect(script.contains("conv=sparse"))
    }

    @Test("LiveFallback is cold or hot")
    func liveFallbackParsed() {
        let (p, d) = SnapshotProfile.parse(
            "Mode=live\nLiveFallback=hot\nWorkPath=/w\n", displayName: "default", base: nil)
        #expect(p?.mode == .live && p?.liveFallback == .hot && d.isEmpty)
        let (bad, diagnostics) = SnapshotProfile.parse(
            "Mode=live\nLiveFallback=live\nWorkPath=/w\n", displayName: "default", base: nil)
        #expect(bad == nil && diagnostics.contains { "\($0)".contains("LiveFallback") })
    }
}
