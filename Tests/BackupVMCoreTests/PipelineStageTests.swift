import Foundation
import Testing

@testable import BackupVMCore

/// VMs the stage tests back up: one with two file disks (cold: copied while stopped), one with two
/// LVs (snapshots, hot or cold).
enum ScriptedVMs {
    static let fileDisks = [
        DomainDisk(target: "vda", kind: .file, format: .raw, source: "/var/lib/libvirt/images/web01-vda.raw"),
        DomainDisk(target: "vdb", kind: .file, format: .qcow2, source: "/var/lib/libvirt/images/web01-vdb.qcow2"),
    ]
    static let lvDisks = [
        DomainDisk(target: "vda", kind: .block, format: .raw, source: "/dev/vg0/web01"),
        DomainDisk(target: "vdb", kind: .block, format: .raw, source: "/dev/vg0/web01-data"),
    ]
    static let volumes = [
        LogicalVolume(vg: "vg0", lv: "web01", sizeBytes: 1 << 30),
        LogicalVolume(vg: "vg0", lv: "web01-data", sizeBytes: 4 << 30),
    ]

    static func files(_ state: DomainState = .running) -> ScriptedHypervisor {
        ScriptedHypervisor(vm: "web01", state: state, disks: fileDisks)
    }

    static func lvm(_ state: DomainState = .running) -> ScriptedHypervisor {
        ScriptedHypervisor(vm: "web01", state: state, disks: lvDisks, volumes: volumes)
    }
}

/// The backup of one VM, stage by stage, through the hypervisor seam: what each stage asks of the
/// hypervisor, in which order, and that a failure in any stage keeps every guarantee (VM in its prior
/// state, no snapshot of ours, nothing partial, earlier backups intact, the reason in the job).
@Suite("pipeline stages through the hypervisor seam", .tags(.unit))
struct PipelineStageTests {
    // MARK: - The stages in order

    @Test("cold, file disks: shut down, copy both while stopped, start; committed; nothing staged")
    func coldFileDisks() throws {
        let h = try PipelineHarness(ScriptedVMs.files())
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        let calls = h.hypervisor.calls.filter { [.shutdown, .copyImage, .start, .save].contains($0) }
        #expect(calls == [.shutdown, .copyImage, .copyImage, .start])
        #expect(h.hypervisor.vmState == .running)
        let backup = try #require(h.store.catalog.newestBackup(of: h.vm))
        let manifest = try Manifest.read(backupDirectory: backup.path)
        #expect(manifest.mode == .cold && manifest.priorState == .running && manifest.compression == .lzop)
        #expect(manifest.disks.map(\.file) == ["vda.raw.lzo", "vdb.qcow2.lzo"])
        #expect(manifest.downtimeSeconds > 0)
        #expect(h.hypervisor.paths.isEmpty, "nothing left in the working path: \(h.hypervisor.paths)")
        #expect(h.storageEntries == [backup.id])
    }

    @Test("hot, LVs: sync, save, snapshot both, restore, then copy both snapshots and the RAM state")
    func hotLVs() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        let relevant: Set<ScriptedHypervisor.Call> = [
            .sendEmergencySync, .save, .createSnapshot, .restore, .copyImage, .removeSnapshot, .shutdown, .start,
        ]
        #expect(
            h.hypervisor.calls.filter(relevant.contains) == [
                .sendEmergencySync, .save, .createSnapshot, .createSnapshot, .restore, .copyImage, .removeSnapshot,
                .copyImage, .removeSnapshot, .copyImage,
            ])
        #expect(h.hypervisor.vmState == .running && h.hypervisor.snapshots.isEmpty)
        let manifest = try Manifest.read(backupDirectory: try #require(h.store.catalog.newestBackup(of: h.vm)).path)
        #expect(manifest.mode == .hot && manifest.ramState?.file == "ram.save.lzo")
        #expect(manifest.disks.map(\.source) == ["/dev/vg0/web01", "/dev/vg0/web01-data"])
    }

    @Test("Mode=hot with a disk that is not an LV: cold, and the manifest says why")
    func hotFallsBackToCold() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), mode: .hot)
        #expect(try h.backup().result["status"] == "done")
        let manifest = try Manifest.read(backupDirectory: try #require(h.store.catalog.newestBackup(of: h.vm)).path)
        #expect(manifest.mode == .cold && manifest.requestedMode == .hot)
        #expect(
            manifest.modeNote
                == "hot needs every disk on LVM; vda, vdb are not LVs: cold backup (Mode=live backs them up without stopping the VM)"
        )
        #expect(h.hypervisor.count(.save) == 0 && h.hypervisor.count(.shutdown) == 1)
    }

    @Test("cold, LVs: shut down, snapshot, start, and only then copy")
    func coldLVs() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm())
        #expect(try h.backup().result["status"] == "done")
        let calls = h.hypervisor.calls.filter { [.shutdown, .createSnapshot, .start, .copyImage].contains($0) }
        #expect(calls == [.shutdown, .createSnapshot, .createSnapshot, .start, .copyImage, .copyImage])
    }

    @Test("keep-on-host: the staged copy becomes the only kept copy, without the RAM state")
    func keepOnHost() throws {
        let h = try PipelineHarness(ScriptedVMs.lvm(), mode: .hot, keepOnHost: true)
        h.hypervisor.addPath(h.work.keptCopy("20200101T000000Z") + "/vda.raw.lzo")
        let run = try h.backup()
        #expect(run.result["status"] == "done")
        let id = try #require(run.result["backup"])
        let kept = h.work.keptCopy(id)
        #expect(h.hypervisor.paths == [kept, kept + "/vda.raw.lzo", kept + "/vdb.raw.lzo"], "only the newest, no RAM")
    }

    @Test("rotation keeps the newest KEEP backups, after the commit")
    func rotation() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), keep: 2)
        for _ in 0..<3 { #expect(try h.backup().result["status"] == "done") }
        #expect(h.store.catalog.backups(of: h.vm).count == 2)
    }

    @Test("a guest that ignores ACPI is forced off with ForceOff=yes, and started again")
    func forceOff() throws {
        let hv = ScriptedVMs.files()
        hv.obeysACPI = false
        let h = try PipelineHarness(hv, profile: "ForceOff=yes")
        #expect(try h.backup().result["status"] == "done")
        #expect(hv.count(.destroy) == 1 && hv.vmState == .running)
        #expect(h.messages.contains("forcing it off (ForceOff=yes)"))
    }

    @Test("a leftover snapshot of ours goes before the new ones; someone else's stays")
    func leftoverSnapshot() throws {
        let hv = ScriptedVMs.lvm()
        let ours = LogicalVolume(vg: "vg0", lv: "web01-bvmsnap-20200101t000000z", sizeBytes: 1 << 30)
        let theirs = LogicalVolume(vg: "vg0", lv: "web01-admin-snap", sizeBytes: 1 << 30)
        hv.addSnapshot(ours)
        hv.addSnapshot(theirs)
        let h = try PipelineHarness(hv, mode: .hot)
        #expect(try h.backup().result["status"] == "done")
        #expect(hv.snapshots == [theirs])
        #expect(h.messages.contains("removing a leftover snapshot of an earlier job"))
    }
}

extension PipelineStageTests {
    @Test("#16: after the clock went back, the new backup is kept and the future-dated one rotated away")
    func clockSteppedBack() throws {
        let h = try PipelineHarness(ScriptedVMs.files(), keep: 1)
        // A backup made before the clock was set back: its ID is in the future.
        #expect(try h.backup().result["status"] == "done")
        let made = try #require(h.store.catalog.newestBackup(of: h.vm))
        let future = h.store.layout.backupDirectory(h.vm, id: "20991231T235959Z")
        try FileManager.default.moveItem(atPath: made.path, toPath: future)
        let run = try h.backup()
        #expect(run.result["status"] == "done")
        let newID = try #require(run.result["backup"])
        #expect(h.store.catalog.backups(of: h.vm).map(\.id) == [newID], "the newest by commit order stays")
        #expect(h.messages.contains("was the clock set back?"))
    }
}
