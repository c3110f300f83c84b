import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9, finding 18: an LV is one disk whether the domain names it /dev/VG/LV or
/// /dev/mapper/VG-LV (LVM doubles the dashes of both names there), and a block device that is not an
/// LV is one disk by any path that leads to it; backup, ExcludeLVs and restore agree on that.
@Suite("LVs and block devices by any of their paths: backup and ExcludeLVs", .tags(.unit))
struct DiskPathTests {
    @Test("/dev/mapper names: dashes doubled in both names, one single dash between; internal layers are no LV")
    func mapperNames() {
        #expect(VolumeName(path: "/dev/mapper/a--b-c") == VolumeName(vg: "a-b", lv: "c"))
        #expect(VolumeName(path: "/dev/mapper/vg0-web01--data") == VolumeName(vg: "vg0", lv: "web01-data"))
        #expect(VolumeName(path: "/dev/mapper/my--vg-my--lv") == VolumeName(vg: "my-vg", lv: "my-lv"))
        #expect(VolumeName(path: "/dev/a-b/c") == VolumeName(vg: "a-b", lv: "c"))
        #expect(VolumeName(vg: "a-b", lv: "c-d").mapperPath == "/dev/mapper/a--b-c--d")
        for notAnLV in ["/dev/mapper/vg0-lg1-real", "/dev/mapper/vg0", "/dev/sdb", "/dev/mapper/-x", "/srv/a/b"] {
            #expect(VolumeName(path: notAnLV) == nil, "\(notAnLV)")
        }
    }

    @Test("ExcludeLVs takes /dev/mapper/VG-LV and block devices by their /dev paths; refuses anything else")
    func excludeReferencesAreChecked() {
        for good in [
            "web01-swap", "vg0/web01-swap", "/dev/vg0/x", "/dev/mapper/my--vg-x", "/dev/sdb",
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "/dev/md/data",
        ] {
            #expect(SafeName.isValidLVReference(good), "\(good)")
        }
        for bad in ["/dev/../etc/shadow", "/dev/$(touch x)", "/etc/passwd", "/dev/", "a/b/c", "/dev/sd b"] {
            #expect(!SafeName.isValidLVReference(bad), "\(bad)")
        }
    }

    @Test(
        "excluded by any path: /dev/VG/LV, /dev/mapper/VG-LV, VG/LV, LV; a device that is not an LV by a link to it"
    )
    func excludedByAnyPath() {
        let mapper = DomainDisk(target: "vda", kind: .block, format: .raw, source: "/dev/mapper/a--b-c")
        let plain = DomainDisk(target: "vdb", kind: .block, format: .raw, source: "/dev/a-b/c")
        let link = DomainDisk(target: "vdc", kind: .block, format: .raw, source: "/dev/disk/by-id/wwn-0x5000c5")
        let lv = LogicalVolume(vg: "a-b", lv: "c", sizeBytes: 1)
        let devices = [
            mapper.source: BlockDevice(canonical: "/dev/dm-3", volume: lv),
            plain.source: BlockDevice(canonical: "/dev/dm-3", volume: lv),
            link.source: BlockDevice(canonical: "/dev/sdb", volume: nil),
            "/dev/sdb": BlockDevice(canonical: "/dev/sdb", volume: nil),
        ]
        for disk in [mapper, plain] {
            for reference in ["c", "a-b/c", "/dev/a-b/c", "/dev/mapper/a--b-c"] {
                #expect(DiskExclusion([reference]).excludes(disk, devices: devices), "\(disk.source) by \(reference)")
                #expect(DiskExclusion([reference]).excludes(disk, devices: [:]), "\(disk.source) by its shape")
            }
            for other in ["a-b", "b/c", "/dev/mapper/a-b-c", "/dev/sdb"] {
                #expect(!DiskExclusion([other]).excludes(disk, devices: devices), "\(disk.source) by \(other)")
            }
        }
        #expect(DiskExclusion(["/dev/sdb"]).excludes(link, devices: devices))
        #expect(DiskExclusion([link.source]).excludes(link, devices: devices))
        #expect(!DiskExclusion(["/dev/sdc"]).excludes(link, devices: devices))
    }

    @Test(
        "backup of /dev/mapper/VG-LV and linked disks: the LV snapshotted and recorded, the others excluded"
    )
    func backupByOtherPaths() throws {
        let disks = [
            DomainDisk(target: "vda", kind: .block, format: .raw, source: "/dev/mapper/vg0-web01"),
            DomainDisk(target: "vdb", kind: .block, format: .raw, source: "/dev/vg0/web01-data"),
            DomainDisk(target: "vdc", kind: .block, format: .raw, source: "/dev/disk/by-id/wwn-0x5000c5"),
        ]
        let hv = ScriptedHypervisor(vm: "web01", state: .running, disks: disks, volumes: ScriptedVMs.volumes)
        hv.links = ["/dev/disk/by-id/wwn-0x5000c5": "/dev/sdb"]
        let h = try PipelineHarness(hv, profile: "ExcludeLVs=\"/dev/mapper/vg0-web01--data /dev/sdb\"")
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        let backup = try #require(h.store.catalog.newestBackup(of: h.vm))
        let manifest = try Manifest.read(backupDirectory: backup.path)
        #expect(manifest.disks.map(\.target) == ["vda"] && manifest.disks.first?.volume == "vg0/web01")
        #expect(manifest.excluded.map(\.target) == ["vdb", "vdc"])
        #expect(hv.count(.createSnapshot) == 1 && manifest.formatVersion == 4)
    }
}

/// The same on the way back: a disk recorded as /dev/mapper/VG-LV is restored into that LV (through
/// a new LV, like any), and a block device that is not an LV is written in place only when its size is
/// the backup's, never for a copy. Restores run for real through a stand-in ssh (RestoreSandbox).
@Suite("restore of LVs by /dev/mapper paths and of block devices that are not LVs", .tags(.spool))
struct DiskPathRestoreTests {
    static let content = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 40_503 >> 7) })

    @Test(
        "/dev/mapper/my--vg-web01 goes back into LV my-vg/web01 (format 1 too), path kept; a copy gets my-vg/web02"
    )
    func mapperPathRestores() throws {
        for formatVersion in [2, 1] {
            let s = try RestoreSandbox()
            let volume = VolumeName(vg: "my-vg", lv: "web01")
            try s.lvm.addGroup("my-vg", freeBytes: 16 << 20)
            try s.lvm.addVolume(volume, content: Data(count: 1 << 20))
            s.setState("shut off", of: s.vm)
            let disk = DomainDisk(target: "vda", kind: .block, format: .raw, source: "/dev/mapper/my--vg-web01")
            try s.storeBackup([(disk, volume, Self.content)], formatVersion: formatVersion)
            let outcome = try s.restorer.restore(.init(vm: s.vm))
            #expect(outcome.disks == ["vda": "/dev/mapper/my--vg-web01"], "format \(formatVersion)")
            #expect(s.lvm.content(volume) == Self.content, "format \(formatVersion)")
            #expect(s.definedXML(s.vm)?.contains("/dev/mapper/my--vg-web01") == true)
            let copy = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
            #expect(copy.disks == ["vda": "/dev/my-vg/web02"])
            #expect(s.lvm.content(VolumeName(vg: "my-vg", lv: "web02")) == Self.content)
            #expect(s.lvm.volumes(in: "my-vg") == ["web01", "web02"])
        }
    }

    /// Found in the sweep of issue #19: an `lvs` that did not answer (a lock held) made every path "not
    /// an LV": a restore then planned to write an LV in place, as a plain block device.
    @Test("an lvs that does not answer is an error, not 'no LV'")
    func lvsThatDoesNotAnswer() throws {
        let dir = TempDir("lvs-down")
        let sandbox = try SandboxHost(dir, stubs: ["lvs": "echo '  Unable to obtain global lock.' >&2; exit 5"])
        #expect {
            _ = try LVM(host: sandbox.host).resolve(["/dev/vg0/web01"])
        } throws: { "\($0)".contains("lvs does not answer") && "\($0)".contains("global lock") }
    }

    /// A loop device over a file of `bytes` in `dir` (root can make them; the lab machine's tests run as root).
    func loopDevice(_ dir: TempDir, bytes: Int) throws -> (device: String, file: String) {
        let file = dir.path + "/device-\(bytes)"
        try Data(repeating: UInt8(ascii: "D"), count: bytes).write(to: URL(fileURLWithPath: file))
        let r = try runTool("/usr/sbin/losetup", ["-f", "--show", file])
        try #require(r.status == 0, "losetup: \(r.err)")
        return (r.out.trimmingCharacters(in: .whitespacesAndNewlines), file)
    }

    @Test(
        "a block device that is not an LV: refused if its size differs or for a copy; written in place when equal"
    )
    func plainBlockDevice() throws {
        let s = try RestoreSandbox(stubs: ["blockdev": "exec /usr/sbin/blockdev \"$@\""])
        s.setState("running", of: s.vm)
        let larger = try loopDevice(s.dir, bytes: 2 << 20)
        let equal = try loopDevice(s.dir, bytes: 1 << 20)
        defer { for d in [larger, equal] { _ = try? runTool("/usr/sbin/losetup", ["-d", d.device]) } }
        for (device, expected) in [
            (larger.device, "has 2097152 bytes, the backup 1048576"),
            (equal.device, "is a block device that is not an LV"),
        ] {
            let disk = DomainDisk(target: "vdb", kind: .block, format: .raw, source: device)
            try s.storeBackup([(disk, nil, Self.content)])
            let copy = device == equal.device ? "web02" : nil
            #expect { _ = try s.restorer.restore(.init(vm: s.vm, newName: copy, force: true)) } throws: { error in
                "\(error)".hasPrefix("vdb: \(device) on kvm1 ") && "\(error)".contains(expected)
                    && "\(error)".hasSuffix("nothing was touched")
            }
            #expect(s.changes.isEmpty && s.state(of: s.vm) == "running", "\(s.changes)")
        }
        #expect(FileManager.default.contents(atPath: larger.file) == Data(repeating: UInt8(ascii: "D"), count: 2 << 20))
        let outcome = try s.restorer.restore(.init(vm: s.vm, force: true))
        #expect(outcome.disks == ["vdb": equal.device] && s.state(of: s.vm) == "shut off")
        _ = try runTool("/usr/bin/sync", [])
        #expect(FileManager.default.contents(atPath: equal.file) == Self.content, "written in place")
    }
}
