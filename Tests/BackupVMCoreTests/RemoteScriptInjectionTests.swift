import Foundation
import Testing

@testable import BackupVMCore

/// Every remote script rendered with hostile values, and run for real (bash, dd, lzop, tee, cksum) on
/// this machine through a stand-in for ssh, with stubs for virsh and LVM that log the arguments they
/// get. A value that escapes its quoting would run `touch pwned...` in the sandbox; a value quoted
/// right arrives at the stub as one literal argument. (Issue #9, finding 12.)
@Suite("remote scripts with hostile values run nothing", .tags(.spool))
struct RemoteScriptInjectionTests {
    let dir = TempDir("inject")
    let sandbox: SandboxHost

    init() throws { sandbox = try SandboxHost(dir) }

    /// Names that run a command if a script interpolates them unquoted (or inside double quotes).
    static let hostile = [
        "d$(touch pwned1)", "d`touch pwned2`", "d';touch pwned3;'", "d\";touch pwned4;\"", "d;touch pwned5",
        "d with space|touch pwned6", "d*",
    ]

    var pwned: [String] { sandbox.pwned }
    var loggedArguments: [String] { sandbox.loggedArguments }

    @Test("disk streams: a hostile source, working directory and staged file are read and written literally")
    func diskStream() throws {
        let host = sandbox.host
        let root = sandbox.sandbox
        for (i, name) in Self.hostile.enumerated() {
            let source = root + "/" + name
            try Data("disk \(i) content\n".utf8).write(to: URL(fileURLWithPath: source))
            let work = root + "/work " + name
            let stored = dir.path + "/stored\(i).lzo"
            let stream = DiskStream(host: host, compression: .lzop, level: 1)
            let r = try stream.copy(
                source: source, workDir: work, stageFile: work + "/" + name + ".lzo", to: stored, abort: AbortFlag())
            #expect(r.rawBytes == Int64("disk \(i) content\n".utf8.count))
            let back = try runTool("/usr/bin/lzop", ["-dc", stored])
            #expect(back.out == "disk \(i) content\n", "the source was read literally: \(name)")
            #expect(FileManager.default.fileExists(atPath: work + "/" + name + ".lzo"), "staged literally: \(name)")
        }
        #expect(pwned.isEmpty, "commands ran: \(pwned)")
    }

    @Test("virsh and LVM commands get hostile paths and names as one literal argument each")
    func virshAndLVM() throws {
        let host = sandbox.host
        let virsh = Virsh(host: host)
        let lvm = LVM(host: host)
        for name in Self.hostile {
            let path = "/srv/" + name
            try virsh.save("web01", to: path)
            try virsh.restore(from: path, paused: true)
            _ = try lvm.resolve([path])
            let lv = LogicalVolume(vg: name, lv: name + BackupNames.snapshotMarker + "x", sizeBytes: 1)
            try lvm.createSnapshot(named: lv.lv, of: LogicalVolume(vg: name, lv: name, sizeBytes: 1), size: "20%")
            _ = try lvm.snapshotStatus(lv)
            try lvm.removeSnapshot(lv)
            #expect(loggedArguments.contains(path) && loggedArguments.contains(lv.fullName), "\(name)")
        }
        #expect(pwned.isEmpty, "commands ran: \(pwned)")
    }

    @Test("working-path housekeeping and restores: hostile directories and destinations stay literal")
    func stagingAndRestore() throws {
        let host = sandbox.host
        let root = sandbox.sandbox
        let hypervisor = SSHHypervisor(host: host, share: nil, compression: .lzop, level: 1)
        for (i, name) in Self.hostile.enumerated() {
            let work = WorkLayout(workPath: root + "/" + name, vm: "web01")
            let id = "20261127T00000\(i)Z"
            try hypervisor.makeDirectory(work.stagingDirectory(id), inWorkPath: work.workPath)
            try hypervisor.keepStagedCopy(work, id: id)
            #expect(FileManager.default.fileExists(atPath: work.keptCopy(id)), "\(name)")
            try hypervisor.removeStagedCopies(work, id: id)
            #expect(!FileManager.default.fileExists(atPath: work.keptCopy(id)), "\(name)")
            try hypervisor.removeDirectory(work.directory)

            // A restore to a hostile file name, and to a hostile block device that does not exist.
            let content = "restored \(i)\n"
            let stored = dir.path + "/image\(i).lzo"
            try Data(content.utf8).write(to: URL(fileURLWithPath: dir.path + "/image\(i)"))
            _ = try runTool("/usr/bin/lzop", ["-1", "-o", stored, dir.path + "/image\(i)"])
            let cksum = try runTool("/usr/bin/cksum", [stored]).out.split(separator: " ")
            let image = Manifest.StoredImage(
                target: "vda", source: "/x", kind: .file, format: .raw, file: "vda.raw.lzo",
                rawBytes: Int64(content.utf8.count), storedBytes: Int64(cksum[1]) ?? 0,
                storedCksum: UInt32(cksum[0]) ?? 0, storedSHA256: "")
            let destination = root + "/" + name + ".raw"
            try ImageWriter(host: host).write(image, from: stored, to: destination, id: id)
            #expect((try? String(contentsOfFile: destination, encoding: .utf8)) == content, "\(name)")
            // A file disk beside a hostile file, swapped in and back, and a hostile block device that
            // does not exist (refused by the script that would write it in place).
            let disk = FileRestore(host: host, image: image, path: root + "/disk " + name, id: id)
            try disk.write(from: stored, abort: nil)
            try disk.swapIn()
            #expect((try? String(contentsOfFile: disk.path, encoding: .utf8)) == content, "\(name)")
            try disk.swapBack()
            #expect(!FileManager.default.fileExists(atPath: disk.path), "\(name)")
            try disk.discard()
            var block = image
            block.kind = .block
            #expect(throws: RemoteError.self) {
                try DeviceRestore(host: host, image: block, path: root + "/" + name + ".dev").write(
                    from: stored, abort: nil)
            }
        }
        #expect(pwned.isEmpty, "commands ran: \(pwned)")
    }

    @Test("LV restores with hostile VG and LV names: lvs, vgs, lvcreate, lvrename, lvremove get them literally")
    func volumeRestore() throws {
        let lvm = try FakeLVM(dir)
        let sandbox = try SandboxHost(dir, stubs: lvm.stubs)
        let content = Data("restored into an LV\n".utf8)
        dir.write("image", String(decoding: content, as: UTF8.self))
        let stored = dir.path + "/image.lzo"
        _ = try runTool("/usr/bin/lzop", ["-1", "-f", "-o", stored, dir.path + "/image"])
        let cksum = try runTool("/usr/bin/cksum", [stored]).out.split(separator: " ")
        let image = Manifest.StoredImage(
            target: "vda", source: "/x", kind: .block, format: .raw, file: "vda.raw.lzo",
            rawBytes: Int64(content.count), storedBytes: Int64(cksum[1]) ?? 0, storedCksum: UInt32(cksum[0]) ?? 0,
            storedSHA256: "")
        for name in Self.hostile {
            let volume = VolumeName(vg: name, lv: name)
            try lvm.addGroup(name, freeBytes: 8 << 20)
            try lvm.addVolume(volume, content: Data("old".utf8))
            let facts = try LVM(host: sandbox.host).restoreFacts(volumes: [volume], groups: [name])
            let existing = try #require(facts.volumes[volume], "\(name)")
            #expect(facts.groups[name]?.freeBytes == 8 << 20, "\(name)")
            _ = try LVM(host: sandbox.host).poolFacts([volume])
            let disk = VolumeRestore(
                host: sandbox.host, image: image, volume: volume, path: volume.path, existing: existing,
                bytes: existing.sizeBytes, id: "20261127T000000Z")
            try disk.write(from: stored, abort: nil)
            try disk.swapIn()
            try disk.swapBack()
            try disk.swapIn()
            #expect(disk.finish() == nil, "\(name)")
            #expect(lvm.content(volume)?.prefix(content.count) == content, "\(name)")
            #expect(lvm.volumes(in: name) == [name], "\(name)")
            #expect(sandbox.loggedArguments.contains(name) && sandbox.loggedArguments.contains(disk.new.fullName))
        }
        #expect(sandbox.pwned.isEmpty, "commands ran: \(sandbox.pwned)")
    }

    @Test("disk paths with shell metacharacters are refused when the domain XML is read (second fence)")
    func hostileDiskPathsAreRefused() {
        for name in Self.hostile {
            let xml = ScriptedHypervisor.domainXML(
                "web01", [DomainDisk(target: "vda", kind: .file, format: .raw, source: "/srv/" + name)])
            #expect(throws: DomainXML.Problem.self, "\(name)") { _ = try DomainXML.disks(of: xml, vm: "web01") }
        }
        let spaced = ScriptedHypervisor.domainXML(
            "web01", [DomainDisk(target: "vda", kind: .file, format: .raw, source: "/srv/my disk.raw")])
        #expect((try? DomainXML.disks(of: spaced, vm: "web01"))?.first?.source == "/srv/my disk.raw")
    }
}

/// Root sweeps old ssh share directories in /tmp (issue #9, finding 13): only its own.
@Suite("ssh share sweep touches only our own directories", .tags(.spool))
struct ShareSweepTests {
    let dir = TempDir("sweep")

    func makeOld(_ path: String) {
        var times = [timeval(tv_sec: 1_000_000, tv_usec: 0), timeval(tv_sec: 1_000_000, tv_usec: 0)]
        _ = lutimes(path, &times)
    }

    @Test("stale 0700 directories of ours go; links, foreign and loose directories stay, link targets untouched")
    func onlyOurs() throws {
        let fm = FileManager.default
        let base = dir.path + "/tmp"
        let victim = dir.path + "/victim"
        try fm.createDirectory(atPath: victim, withIntermediateDirectories: true)
        dir.write("victim/precious", "keep me")
        for name in ["bvm-ssh.ours", "bvm-ssh.loose", "bvm-ssh.foreign"] {
            try fm.createDirectory(atPath: base + "/" + name, withIntermediateDirectories: true)
        }
        chmod(base + "/bvm-ssh.ours", 0o700)
        chmod(base + "/bvm-ssh.loose", 0o755)
        chmod(base + "/bvm-ssh.foreign", 0o700)
        chown(base + "/bvm-ssh.foreign", 65534, 65534)
        // A planted link inside our directory, and a planted link as the directory itself.
        try fm.createSymbolicLink(atPath: base + "/bvm-ssh.ours/link", withDestinationPath: victim)
        try fm.createSymbolicLink(atPath: base + "/bvm-ssh.planted", withDestinationPath: victim)
        for name in ["bvm-ssh.ours", "bvm-ssh.loose", "bvm-ssh.foreign", "bvm-ssh.planted"] {
            makeOld(base + "/" + name)
        }

        SSHConnectionShare.sweepStale(in: base)
        let left = try fm.contentsOfDirectory(atPath: base).sorted()
        #expect(left == ["bvm-ssh.foreign", "bvm-ssh.loose", "bvm-ssh.planted"])
        #expect((try? String(contentsOfFile: victim + "/precious", encoding: .utf8)) == "keep me")
    }
}

/// A full backup disk is named as such (issue #9, finding 18), not "exit 141 (no message)".
@Suite("storage full during a transfer", .tags(.spool))
struct StorageFullTests {
    let dir = TempDir("full")

    @Test("a 1 MiB file system for a 4 MiB incompressible stream: 'no space left on BackupStorage'")
    func storageFull() throws {
        let sandbox = try SandboxHost(dir)
        let storage = dir.path + "/storage"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        let mount = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", storage])
        try #require(mount.status == 0, "mount: \(mount.err)")
        defer { _ = try? runTool("/bin/umount", [storage]) }
        let source = sandbox.sandbox + "/disk.raw"
        #expect(
            try runTool("/bin/dd", ["if=/dev/urandom", "of=\(source)", "bs=1M", "count=4", "status=none"]).status == 0)
        let stream = DiskStream(host: sandbox.host, compression: .lzop, level: 1)
        #expect {
            _ = try stream.copy(
                source: source, workDir: sandbox.sandbox + "/work", stageFile: nil, to: storage + "/vda.raw.lzo",
                abort: AbortFlag())
        } throws: { "\($0)".hasPrefix("no space left on BackupStorage (\(storage))") }
    }
}
