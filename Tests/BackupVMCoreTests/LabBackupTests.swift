import Foundation
import Testing

@testable import BackupVMCore

/// Backups and restores of real TCG guests on the lab's hypervisors, over real ssh, with real lzop.
@Suite("lab: backup and restore of file-disk VMs", .tags(.lab), .serialized)
struct LabBackupTests {
    let tmp = TempDir("lab")

    @Test("running guest with raw + qcow2: cold backup, running again, lzop -t, bit-identical restore that boots")
    func coldBackupAndRestore() throws {
        let lab = try Lab.require()
        let vm = "main1"
        let copy = "main1copy"
        lab.removeGuest(vm)
        lab.removeGuest(copy)
        defer {
            lab.removeGuest(vm)
            lab.removeGuest(copy)
        }
        let disks = try lab.makeGuest("kvm1", vm, raw: 16, qcow2: 8)
        let vdaPath = try #require(disks["vda"]).path
        let vdbPath = try #require(disks["vdb"]).path
        let config = lab.config(tmp, schedule: "\(vm) * 3", profiles: [vm: "Mode=hot"])
        let readyBefore = lab.readyCount("kvm1", vm)

        let r = try backupVM(config, [vm])
        #expect(r.status == 0, "\(r.err)")
        #expect(try lab.state("kvm1", vm) == "running", "running again afterwards")
        #expect(
            eventually(timeout: 60) { lab.readyCount("kvm1", vm) == readyBefore + 1 },
            "it was shut down and booted again (cold)")
        #expect(
            r.err.contains("hot needs every disk on LVM; vda, vdb are not LVs: cold backup"),
            "hot falls back to cold and says why")

        let backups = BackupCatalog(storage: tmp.path + "/storage").backups(of: vm)
        try #require(backups.count == 1)
        let manifest = try Manifest.read(backupDirectory: backups[0].path)
        #expect(manifest.mode == .cold && manifest.requestedMode == .hot && manifest.priorState == .running)
        #expect(manifest.host == "kvm1")
        #expect(manifest.downtimeSeconds > 0)
        try #require(manifest.disks.map(\.target) == ["vda", "vdb"])
        let original = try runTool("/usr/bin/cksum", [vdaPath]).out.split(separator: " ").prefix(2).joined(
            separator: " ")
        let stored = try runTool("/bin/sh", ["-c", "lzop -dc '\(backups[0].path)/vda.raw.lzo' | cksum"]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(stored == original, "the stored raw disk decompresses to what the guest had")
        #expect(manifest.disks[0].rawBytes == 16 << 20)
        let storedFile = try runTool("/usr/bin/cksum", [backups[0].path + "/vda.raw.lzo"]).out.split(separator: " ")
        #expect(
            storedFile.first.map(String.init) == String(manifest.disks[0].storedCksum),
            "cksum FILE matches the manifest")
        for image in manifest.disks {
            let t = try runTool("/usr/bin/lzop", ["-t", backups[0].path + "/" + image.file])
            #expect(t.status == 0, "lzop -t \(image.file): \(t.err)")
        }
        #expect(FileManager.default.fileExists(atPath: backups[0].path + "/domain.xml"))
        let mode =
            (try FileManager.default.attributesOfItem(atPath: backups[0].path + "/vda.raw.lzo")[.posixPermissions]
                as? Int) ?? 0
        #expect(mode == 0o600)

        // Restore under a new name on the other host, compare, boot.
        let rr = try backupVM(config, ["restore", vm, "--as", copy, "--to-host", "kvm2"])
        #expect(rr.status == 0, "\(rr.err)")
        let restoredRaw = lab.images("kvm2") + "/\(copy)-vda.raw"
        let restoredQcow2 = lab.images("kvm2") + "/\(copy)-vdb.qcow2"
        #expect(try runTool("/usr/bin/cmp", [vdaPath, restoredRaw]).status == 0, "raw disk bit-identical")
        let cmp = try runTool("/usr/bin/qemu-img", ["compare", "-U", vdbPath, restoredQcow2])
        #expect(cmp.status == 0, "qcow2 identical by content: \(cmp.out) \(cmp.err)")
        #expect(try lab.state("kvm2", copy) == "shut off")
        try lab.ssh("kvm2", "virsh start \(copy)")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", copy) >= 1 }, "the restored guest boots")
        #expect(lab.console("kvm2", copy).contains("LAB-GUEST-DISKS: vda vdb"))

        // verify: intact, then one flipped byte is reported with the file's name.
        #expect(try backupVM(config, ["verify", vm]).status == 0)
        let victim = backups[0].path + "/vdb.qcow2.lzo"
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: victim))
        try h.seek(toOffset: 4096)
        let byte = try #require(try h.read(upToCount: 1)?.first)
        try h.seek(toOffset: 4096)
        h.write(Data([byte ^ 0x01]))
        try h.close()
        let bad = try backupVM(config, ["verify", vm])
        #expect(bad.status == 1)
        #expect(bad.out.contains("BAD") && bad.out.contains(victim), "\(bad.out)")
        #expect(try backupVM(config, ["list", vm]).out.contains("BAD"))
    }

    @Test("refuses to restore over a running VM unless --force")
    func restoreRefusesRunningVM() throws {
        let lab = try Lab.require()
        let vm = "live1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 8)
        let config = lab.config(tmp, schedule: "\(vm) * 3")
        #expect(try backupVM(config, [vm]).status == 0)
        let r = try backupVM(config, ["restore", vm])
        #expect(r.status == 1)
        #expect(r.err.contains("running on kvm1") && r.err.contains("--force"), "\(r.err)")
        #expect(try lab.state("kvm1", vm) == "running", "untouched")
        let forced = try backupVM(config, ["restore", vm, "--force", "--start"])
        #expect(forced.status == 0, "\(forced.err)")
        #expect(try lab.state("kvm1", vm) == "running")
    }

    @Test("a manual run whose terminal goes away (stderr pipe closed, SIGHUP) while the VM is off rolls back")
    func hangupRollsBack() throws {
        let lab = try Lab.require()
        let vm = "hup1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 256)
        let config = lab.config(tmp, schedule: "\(vm) * 3")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Paths.binary("backup_vm"))
        process.arguments = [vm, "--config-dir", config]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errPipe = Pipe()
        process.standardError = errPipe
        try process.run()
        // Read stderr until the VM is off for the copy, then drop the reader and hang up.
        var seen = Data()
        let reader = errPipe.fileHandleForReading
        while !String(decoding: seen, as: UTF8.self).contains("shut down") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        try #require(
            String(decoding: seen, as: UTF8.self).contains("shut down"), "\(String(decoding: seen, as: UTF8.self))")
        try reader.close()
        kill(process.processIdentifier, SIGHUP)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "it was not killed by SIGHUP or SIGPIPE")
        #expect(eventually(timeout: 60) { (try? lab.state("kvm1", vm)) == "running" }, "the VM runs again")
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path + "/storage/\(vm)")) ?? []
        #expect(!entries.contains(where: BackupNames.isTemporary), "\(entries)")
    }

    @Test("paused guest: RAM state saved and kept, paused again afterwards")
    func pausedGuest() throws {
        let lab = try Lab.require()
        let vm = "paused1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 8)
        try lab.ssh("kvm1", "virsh suspend \(vm)")
        let config = lab.config(tmp, schedule: "\(vm) * 3")
        let r = try backupVM(config, [vm])
        #expect(r.status == 0, "\(r.err)")
        #expect(try lab.state("kvm1", vm) == "paused")
        let backup = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm))
        let manifest = try Manifest.read(backupDirectory: backup.path)
        #expect(manifest.priorState == .paused)
        #expect((manifest.ramState?.rawBytes ?? 0) > 0)
        #expect(try backupVM(config, ["verify", vm]).status == 0)
    }

    @Test("retention keep=1 after two backups; keep-on-host holds only the newest; ACPI ignored, then ForceOff")
    func retentionAndKeepOnHost() throws {
        let lab = try Lab.require()
        let vm = "keep1"
        let stubborn = "stubborn1"
        lab.removeGuest(vm)
        lab.removeGuest(stubborn)
        defer {
            lab.removeGuest(vm)
            lab.removeGuest(stubborn)
        }
        try lab.makeGuest("kvm1", vm, raw: 8)
        try lab.makeGuest("kvm1", stubborn, raw: 8, ignoreACPI: true)
        let config = lab.config(
            tmp, schedule: "\(vm) * 1 yes\n\(stubborn) * 2 yes",
            profiles: [stubborn: "ShutdownTimeout=3"])
        let catalog = BackupCatalog(storage: tmp.path + "/storage")
        var ids: [String] = []
        for round in 0..<2 {
            // Backups are not back to back in real life: let the guest finish booting first.
            #expect(eventually(timeout: 90) { lab.readyCount("kvm1", vm) == round + 1 })
            let r = try backupVM(config, [vm])
            #expect(r.status == 0, "\(r.err)")
            ids.append(try #require(catalog.newestBackup(of: vm)).id)
            let staged = try FileManager.default.contentsOfDirectory(atPath: lab.work("kvm1") + "/\(vm)")
            #expect(staged == [ids.last ?? "?"], "exactly the newest staged copy on the hypervisor: \(staged)")
        }
        #expect(catalog.backups(of: vm).map(\.id) == Array(ids.suffix(1)), "keep=1 leaves the newest")
        let keptDir = lab.work("kvm1") + "/\(vm)/\(try #require(ids.last))"
        let stagedFiles = try FileManager.default.contentsOfDirectory(atPath: keptDir)
        #expect(stagedFiles == ["vda.raw.lzo"])
        // Remote scripts run under umask 077: the copy on the hypervisor is root's alone.
        func mode(_ path: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
        }
        #expect(try mode(keptDir) == 0o700 && mode(keptDir + "/vda.raw.lzo") == 0o600)

        // A guest that ignores ACPI: without ForceOff the backup fails and the guest keeps running;
        // nothing partial is left.
        let first = try backupVM(config, [stubborn])
        #expect(first.status == 1)
        #expect(first.err.contains("did not shut down within 3 s"), "\(first.err)")
        #expect(try lab.state("kvm1", stubborn) == "running", "a failed cold backup leaves the VM running")
        #expect(catalog.backups(of: stubborn).isEmpty)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: tmp.path + "/storage/\(stubborn)").isEmpty,
            "no partial left")
        // With ForceOff=yes it is forced off after the timeout, backed up, and started again.
        tmp.write("vmsnapshot.d/\(stubborn)", "ShutdownTimeout=3\nForceOff=yes\n")
        let forced = try backupVM(config, [stubborn])
        #expect(forced.status == 0, "\(forced.err)")
        #expect(forced.err.contains("forcing it off"))
        #expect(try lab.state("kvm1", stubborn) == "running")

        // A backup that fails removes no good backup: every stage's failure is shown through the
        // hypervisor seam (PipelineFailureTests).
    }
}
