import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9, finding 6: a restore checks the stored images before it touches anything, writes every
/// LV into a new LV beside it (every file beside the file) while the VM still runs, and swaps them in
/// only when all are complete and checked. The real BackupRestorer runs its real scripts (bash, dd,
/// lzop, cksum) through a stand-in ssh against LVM over plain files (RestoreSandbox, FakeLVM).
@Suite("restore: nothing touched before the backup checks out; LVs through a new LV", .tags(.spool))
struct RestoreSafetyTests {
    static let volume = VolumeName(vg: "vg0", lv: "web01")
    static let lvDisk = DomainDisk(target: "vda", kind: .block, format: .raw, source: "/dev/vg0/web01")
    /// The LV as it is now, and as the backup has it (1 MiB each).
    static let current = Data(repeating: UInt8(ascii: "O"), count: 1 << 20)
    static let backedUp = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })

    /// kvm1 with vg0 (`freeBytes` free) holding web01 as it is now, web01 in `state`, and a backup of
    /// it whose vda is that LV.
    func sandbox(freeBytes: Int64 = 64 << 20, state: String = "running") throws -> RestoreSandbox {
        let s = try RestoreSandbox()
        try s.lvm.addGroup("vg0", freeBytes: freeBytes)
        try s.lvm.addVolume(Self.volume, content: Self.current)
        s.setState(state, of: s.vm)
        try s.storeBackup([(Self.lvDisk, Self.volume, Self.backedUp)])
        return s
    }

    func expectUntouched(
        _ s: RestoreSandbox, state: String = "running", sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(s.lvm.content(Self.volume) == Self.current, "web01 as it was", sourceLocation: sourceLocation)
        #expect(s.lvm.volumes(in: "vg0") == ["web01"], "no LV of ours left", sourceLocation: sourceLocation)
        #expect(s.lvm.freeBytes("vg0") == 64 << 20, "vg0's space back", sourceLocation: sourceLocation)
        #expect(s.state(of: s.vm) == state, "the VM \(state)", sourceLocation: sourceLocation)
        #expect(s.definedXML(s.vm) == nil, "nothing defined", sourceLocation: sourceLocation)
    }

    @Test(
        "a stored image with a flipped byte, or cut short: refused (--force too); kvm1 asked only its state"
    )
    func damagedImageTouchesNothing() throws {
        for cut in [false, true] {
            let s = try sandbox()
            let file = s.backupDirectory + "/vda.raw.lzo"
            var stored = try Data(contentsOf: URL(fileURLWithPath: file))
            if cut { stored = stored.prefix(stored.count / 2) } else { stored[stored.count / 2] ^= 0x01 }
            try stored.write(to: URL(fileURLWithPath: file))
            #expect {
                _ = try s.restorer.restore(.init(vm: s.vm, force: true))
            } throws: { error in
                guard case .damagedImage(_, _, let f, let detail)? = error as? RestoreError else { return false }
                return f == file && detail.contains(cut ? "bytes, the manifest says" : "sha256")
                    && "\(error)".contains("nothing on a hypervisor was touched")
            }
            #expect(s.commands == ["virsh -q domstate web01"], "only the question whether it runs: \(s.commands)")
            expectUntouched(s)
        }
    }

    @Test(
        "the stream decompresses short on kvm1: the new LV goes, web01 and the VM stay as they were"
    )
    func shortStreamLeavesTheLVAlone() throws {
        let s = try sandbox()
        // The decompressor on the hypervisor stops after 4 KiB but reads its input to the end and exits 0.
        try SandboxHost.executable(
            s.dir.path + "/stubs/lzop", "#!/bin/bash\n/usr/bin/lzop \"$@\" | head -c 4096; cat >/dev/null; exit 0\n")
        #expect {
            _ = try s.restorer.restore(.init(vm: s.vm, force: true))
        } throws: { error in
            let text = "\(error)"
            return text.contains("writing vda into the new LV vg0/web01-bvmrestore-")
                && text.contains("decompressed to 4096 bytes, expected 1048576")
        }
        #expect(s.commands.contains { $0.hasPrefix("lvcreate") }, "the new LV was made")
        #expect(!s.commands.contains { $0.hasPrefix("virsh destroy") || $0.hasPrefix("lvrename") })
        expectUntouched(s)
    }

    @Test("SIGTERM while the new LV is written: the stream is cut at once, the new LV removed, all as it was")
    func abortCutsTheStream() throws {
        let s = try sandbox()
        try SandboxHost.executable(s.dir.path + "/stubs/lzop", "#!/bin/bash\nsleep 20\nexec /usr/bin/lzop \"$@\"\n")
        let abort = AbortFlag()
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { abort.raise() }
        let t0 = Date()
        #expect(throws: RemoteError.self) { _ = try s.restorer.restore(.init(vm: s.vm, force: true, abort: abort)) }
        #expect(Date().timeIntervalSince(t0) < 15, "cut at once, not after the stream")
        expectUntouched(s)
    }

    @Test(
        "--force: the VM runs until the new LV checks out; swapped in for web01, whose old LV goes after the define"
    )
    func goodRestoreSwapsTheNewLVIn() throws {
        let s = try sandbox()
        let outcome = try s.restorer.restore(.init(vm: s.vm, force: true))
        #expect(outcome.disks == ["vda": "/dev/vg0/web01"])
        #expect(s.lvm.content(Self.volume) == Self.backedUp)
        #expect(s.lvm.volumes(in: "vg0") == ["web01"] && s.lvm.freeBytes("vg0") == 64 << 20)
        #expect(s.state(of: s.vm) == "shut off")
        #expect(s.definedXML(s.vm)?.contains("/dev/vg0/web01") == true)
        let c = s.changes
        func at(_ prefix: String, _ containing: String? = nil) -> Int? {
            c.firstIndex { $0.hasPrefix(prefix) && containing.map($0.contains) != false }
        }
        let order = [
            at("lvcreate", "web01-bvmrestore-"), at("virsh destroy"), at("lvrename", "web01-bvmreplaced-"),
            at("lvrename", "web01-bvmrestore-"), at("virsh define"), at("lvremove", "vg0/web01-bvmreplaced-"),
        ]
        #expect(order.allSatisfy { $0 != nil } && order.map { $0 ?? 0 } == order.map { $0 ?? 0 }.sorted(), "\(c)")
    }

    @Test(
        "vg0 without room for the new LV: refused first, naming vg0, the space needed and a leftover of ours"
    )
    func shortVolumeGroupRefusedFirst() throws {
        let s = try sandbox(freeBytes: 512 << 10)
        let leftover = VolumeName(vg: "vg0", lv: BackupNames.restoringLV(of: "web01", id: "20200101T000000Z"))
        try s.lvm.addVolume(leftover, content: Data(count: 4096))
        #expect {
            _ = try s.restorer.restore(.init(vm: s.vm, force: true))
        } throws: { error in
            guard case .noSpace(let n)? = error as? RestoreError else { return false }
            let text = "\(error)"
            return n.place == "volume group vg0" && n.neededBytes == 1 << 20 && n.freeBytes == 512 << 10
                && text.contains("volume group vg0 on kvm1 has 524288 bytes (512.0 KiB) free")
                && text.contains("needs 1048576 bytes (1.0 MiB)") && text.contains(leftover.fullName)
        }
        #expect(s.changes.isEmpty, "\(s.changes)")
        #expect(s.state(of: s.vm) == "running" && s.lvm.content(Self.volume) == Self.current)
    }

    @Test(
        "two disks, the second does not check out: both new copies removed, both disks and the VM as they were"
    )
    func secondDiskFailsNothingReplaced() throws {
        let s = try sandbox()
        let file = s.sandbox.sandbox + "/images/web01-vdb.raw"
        s.dir.write("sandbox/images/web01-vdb.raw", "the file disk as it is")
        let fileDisk = DomainDisk(target: "vdb", kind: .file, format: .raw, source: file)
        try s.storeBackup([(Self.lvDisk, Self.volume, Self.backedUp), (fileDisk, nil, Data("backed up".utf8))])
        // What arrives decompresses to one byte less than the manifest says.
        var manifest = try Manifest.read(backupDirectory: s.backupDirectory)
        manifest.disks[1].rawBytes += 1
        try manifest.encoded().write(to: URL(fileURLWithPath: s.backupDirectory + "/manifest"))
        #expect { _ = try s.restorer.restore(.init(vm: s.vm, force: true)) } throws: {
            "\($0)".contains("decompressed to 9 bytes, expected 10")
        }
        expectUntouched(s)
        #expect((try? String(contentsOfFile: file, encoding: .utf8)) == "the file disk as it is")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.sandbox.sandbox + "/images") == ["web01-vdb.raw"])
    }

    @Test(
        "the swap fails halfway (the new LV cannot take the name): web01 renamed back, new LV removed, no define"
    )
    func failedSwapIsUndone() throws {
        let s = try sandbox()
        try s.lvm.failOn("lvrename", call: 2)
        #expect { _ = try s.restorer.restore(.init(vm: s.vm, force: true)) } throws: { error in
            "\(error)".contains("swapping vg0/web01-bvmrestore-") && "\(error)".contains("vg0/web01 is back as it was")
        }
        expectUntouched(s, state: "shut off")
    }

    @Test(
        "a copy (--as) into an LV that does not exist yet: written under our name, then renamed; original untouched"
    )
    func copyIntoANewLV() throws {
        let s = try sandbox()
        let outcome = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
        #expect(outcome.disks == ["vda": "/dev/vg0/web02"])
        #expect(s.lvm.content(VolumeName(vg: "vg0", lv: "web02")) == Self.backedUp)
        #expect(s.lvm.volumes(in: "vg0") == ["web01", "web02"])
        #expect(s.lvm.content(Self.volume) == Self.current && s.state(of: s.vm) == "running")
        #expect(s.definedXML("web02")?.contains("/dev/vg0/web02") == true)
    }

    @Test("a copy whose new names would put two disks into one LV (a and web01-a both become web02-a): refused first")
    func copyNamesMeet() throws {
        let s = try sandbox()
        let a = DomainDisk(target: "vdb", kind: .block, format: .raw, source: "/dev/vg0/a")
        let b = DomainDisk(target: "vdc", kind: .block, format: .raw, source: "/dev/vg0/web01-a")
        try s.storeBackup([
            (a, VolumeName(vg: "vg0", lv: "a"), Data(count: 4096)),
            (b, VolumeName(vg: "vg0", lv: "web01-a"), Data(count: 4096)),
        ])
        #expect(
            throws: RestoreError.unfitDestination(
                disk: "vdc", path: "/dev/vg0/web02-a", host: "kvm1", what: "is where vdb goes too")
        ) {
            _ = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
        }
        #expect(s.changes.isEmpty, "\(s.changes)")
    }
}
