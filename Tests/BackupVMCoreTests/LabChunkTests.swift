import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// Store=chunks on the lab (issue #11): the static helper copied to a real hypervisor, a running guest
/// backed up twice with 2 of its 64 chunks changed in between (wire and store counted), restores,
/// rotation and GC, a GC during an upload, and two clones of one template sharing their chunks.
@Suite("lab: chunk store", .tags(.lab), .serialized)
struct LabChunkTests {
    let tmp = TempDir("lab-chunks")

    /// The helper as it ships: scripts/test builds it (scripts/build-helper) and passes its path.
    static func helper() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["BVM_CHUNK_HELPER"], !path.isEmpty,
            FileManager.default.isExecutableFile(atPath: path)
        else {
            throw LabError(description: "BVM_CHUNK_HELPER is not set: run scripts/build-helper (scripts/test does)")
        }
        return path
    }

    func config(_ lab: Lab, schedule: String, profiles: [String: String] = [:]) throws -> String {
        lab.config(
            tmp, schedule: schedule, extraMain: "Store=chunks\nChunkHelper=\(try Self.helper())", profiles: profiles)
    }

    var storage: String { tmp.path + "/storage" }

    /// Bytes kvm1's sshd sends (TCP from 127.0.0.11 port 22), counted by an iptables rule: what the
    /// backups cost on the wire, counted outside backup_vm. Tests run one at a time (--no-parallel).
    final class WireCounter {
        let chain = "BVMWIRE\(getpid())"
        let rule: [String]

        init(address: String) throws {
            rule = ["-p", "tcp", "-s", address, "--sport", "22", "-j", chain]
            try Self.iptables(["-N", chain])
            try Self.iptables(["-I", "OUTPUT"] + rule)
        }

        var bytes: Int64 {
            let out = (try? runTool("/usr/sbin/iptables", ["-L", "OUTPUT", "-v", "-n", "-x"]).out) ?? ""
            let line = out.split(separator: "\n").first { $0.contains(chain) } ?? ""
            return Int64(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }

        deinit {
            _ = try? Self.iptables(["-D", "OUTPUT"] + rule)
            _ = try? Self.iptables(["-X", chain])
        }

        static func iptables(_ args: [String]) throws {
            let r = try runTool("/usr/sbin/iptables", args)
            guard r.status == 0 else { throw LabError(description: "iptables \(args): \(r.err)") }
        }
    }

    func exported(_ config: String, _ vm: String, _ disk: String, backup: String? = nil) throws -> String {
        let out = tmp.path + "/\(vm)-\(disk)-\(backup ?? "newest")-\(UUID().uuidString.prefix(8)).raw"
        let r = try backupVM(config, ["export", vm, disk, "-o", out] + (backup.map { ["--backup", $0] } ?? []))
        #expect(r.status == 0, "export: \(r.out) \(r.err)")
        return try sha256(ofFile: out)
    }

    func manifest(_ vm: String) throws -> Manifest {
        try Manifest.read(backupDirectory: try #require(BackupCatalog(storage: storage).newestBackup(of: vm)).path)
    }

    @Test("a running guest twice with 2 of 64 chunks changed: ≤ 5 % on the wire and in the store; restores; GC")
    func incrementalForever() throws {
        let lab = try Lab.require()
        let (vm, first, second) = ("chunk1", "chunk1a", "chunk1b")
        for g in [vm, first, second] { lab.removeGuest(g) }
        defer { for g in [vm, first, second] { lab.removeGuest(g) } }
        let disks = try lab.makeGuest("kvm1", vm, raw: 256, qcow2: nil)
        let image = try #require(disks["vda"]).path
        let config = try config(lab, schedule: "\(vm) * 1", profiles: [vm: "Mode=live"])
        let wire = try WireCounter(address: "127.0.0.11")
        let pid = try LabLiveTests.qemuPid(lab, "kvm1", vm)

        // First backup: every chunk crosses the wire once.
        var w0 = wire.bytes
        var r = try backupVM(config, [vm])
        #expect(r.status == 0, "\(r.err)")
        let wire1 = wire.bytes - w0
        let stored1 = (try ChunkStoreStats.measure(storage: storage)).storedBytes
        let m1 = try manifest(vm)
        #expect(m1.store == .chunks && m1.disks.first?.chunks?.chunks == 64 && m1.downtimeSeconds == 0)
        let id1 = m1.id
        #expect(try exported(config, vm, "vda") == disks["vda"]?.sha256, "the first backup holds the disk")
        r = try backupVM(config, ["restore", vm, "--as", first, "--to-host", "kvm2"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try sha256(ofFile: lab.images("kvm2") + "/\(first)-vda.raw") == disks["vda"]?.sha256)
        try lab.ssh("kvm2", "virsh start \(first) >/dev/null")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", first) >= 1 }, "the restored copy boots")
        try lab.ssh("kvm2", "virsh destroy \(first) >/dev/null")

        // The helper on the hypervisor is checked before every use: a damaged copy is replaced.
        let remote = try lab.ssh("kvm1", "ls /var/lib/backup_vm/.bvm-chunk-helper-*").trimmingCharacters(
            in: .whitespacesAndNewlines)
        try lab.ssh("kvm1", "printf X | dd of=\(remote) bs=1 seek=4096 conv=notrunc status=none")

        // 2 of the 64 chunks change (random data, as the guest would write it), the guest running.
        for chunk in [10, 41] {
            try lab.ssh(
                "kvm1", "dd if=/dev/urandom of=\(image) bs=4M seek=\(chunk) count=1 conv=notrunc,fsync status=none")
        }
        let changedSHA = try sha256(ofFile: image)
        w0 = wire.bytes
        r = try backupVM(config, [vm])
        #expect(r.status == 0, "\(r.err)")
        let wire2 = wire.bytes - w0
        let stored2 = (try ChunkStoreStats.measure(storage: storage)).storedBytes
        let m2 = try manifest(vm)
        // What the second backup added to the store (the job's GC then removed what only the rotated
        // first backup used, so the store's size alone says less).
        let growth = m2.disks.first?.chunks?.newStoredBytes ?? -1
        #expect(m2.disks.first?.chunks?.newChunks == 2, "\(String(describing: m2.disks.first?.chunks))")
        #expect(wire2 * 20 <= wire1, "second backup: \(wire2) bytes on the wire, first \(wire1)")
        #expect(growth * 20 <= stored1, "store grew by \(growth) bytes, first backup stored \(stored1)")
        let localSHA = try ChunkHelper.load(path: Self.helper()).sha256
        #expect(try lab.ssh("kvm1", "sha256sum \(remote)").hasPrefix(localSHA), "the damaged helper was replaced")
        #expect(try LabLiveTests.qemuPid(lab, "kvm1", vm) == pid, "the guest ran through both backups")

        // keep 1: the first backup was rotated away and the job's own GC removed its 2 chunks at once
        // (no age: nothing running named them); a GC by hand finds nothing more to remove.
        #expect(BackupCatalog(storage: storage).backups(of: vm).map(\.id) == [m2.id] && m2.id != id1)
        #expect(stored2 < stored1 + growth, "the rotated backup's own chunks are gone: \(stored2) bytes")
        r = try backupVM(config, ["gc"])
        #expect(r.status == 0 && r.out.contains("removed 0 "), "\(r.out) \(r.err)")
        let counts = r.out.split(separator: " ").compactMap { Int($0) }
        #expect(counts.count >= 3 && counts[1] == counts[2], "every chunk in the store is named: \(r.out)")
        #expect(try backupVM(config, ["verify", vm]).status == 0)
        #expect(try exported(config, vm, "vda") == changedSHA, "the second backup holds the changed disk")
        r = try backupVM(config, ["restore", vm, "--as", second, "--to-host", "kvm2"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try sha256(ofFile: lab.images("kvm2") + "/\(second)-vda.raw") == changedSHA)
        try lab.ssh("kvm2", "virsh start \(second) >/dev/null")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", second) >= 1 }, "the restored copy boots")
        try lab.ssh("kvm2", "virsh destroy \(second) >/dev/null")
        let stats = try backupVM(config, ["store-stats"]).out
        print(
            "LabChunkTests measured: wire first \(wire1) bytes, second \(wire2) (\(String(format: "%.2f", Double(wire2) * 100 / Double(wire1))) %);"
                + " store first \(stored1) bytes, growth \(growth) (\(String(format: "%.2f", Double(growth) * 100 / Double(stored1))) %);"
                + " \(stats.split(separator: "\n").joined(separator: "; "))")

        // A GC while a backup uploads: the backup's chunks are unreferenced and old (its only backup
        // deleted by hand), the GC runs while the upload is held; the backup still completes whole.
        try FileManager.default.removeItem(
            atPath: try #require(BackupCatalog(storage: storage).newestBackup(of: vm)).path)
        try runTool("/bin/sh", ["-c", "find '\(storage)/.chunks' -name '*.zst' -exec touch -d '-10 minutes' {} +"])
        let job = try ChildProcess(Paths.binary("backup_vm"), [vm, "--config-dir", config])
        defer { job.stop() }
        var gcOut = ""
        let held = LabLiveTests.holdReader(of: vm, export: "vda", seconds: 1, within: 120) {
            // Let the helper get some way into the disk first (its reads before the hold are answered).
            gcOut = (try? backupVM(config, ["gc"]))?.out ?? "gc did not run"
        }
        #expect(held, "\(job.standardError)")
        #expect(job.wait(timeout: 300))
        #expect(job.process.terminationStatus == 0, "\(job.standardError)")
        #expect(gcOut.contains("1 backups running"), "\(gcOut)")
        print("LabChunkTests measured: gc during the upload: \(gcOut.trimmingCharacters(in: .whitespacesAndNewlines))")
        #expect(try backupVM(config, ["verify", vm]).status == 0)
        #expect(try exported(config, vm, "vda") == changedSHA, "the backup made during the GC is whole")
    }

    @Test(
        "two VMs cloned from one template share their chunks (the second grows the store < 5 %); a damaged shared chunk is named for both and refused by a restore"
    )
    func templateClones() throws {
        let lab = try Lab.require()
        let (a, b) = ("tpl1", "tpl2")
        for g in [a, b, "tpl2copy"] { lab.removeGuest(g) }
        defer { for g in [a, b, "tpl2copy"] { lab.removeGuest(g) } }
        let disksA = try lab.makeGuest("kvm1", a, raw: 64, start: false)
        let disksB = try lab.makeGuest("kvm1", b, raw: 64, start: false)
        // The clone: b's disk is a copy of a's (as `virt-clone` or a template copy makes it).
        try runTool("/bin/cp", [try #require(disksA["vda"]).path, try #require(disksB["vda"]).path])
        let config = try config(lab, schedule: "\(a) * 3\n\(b) * 3")
        var r = try backupVM(config, [a])
        #expect(r.status == 0, "\(r.err)")
        let afterA = (try ChunkStoreStats.measure(storage: storage)).storedBytes
        r = try backupVM(config, [b])
        #expect(r.status == 0, "\(r.err)")
        let growth = (try ChunkStoreStats.measure(storage: storage)).storedBytes - afterA
        #expect(try manifest(b).disks.first?.chunks?.newChunks == 0)
        #expect(growth * 20 < afterA, "the clone grew the store by \(growth) bytes (the template: \(afterA))")
        #expect(try manifest(a).mode == .cold && manifest(b).mode == .cold)
        #expect(try exported(config, b, "vda") == disksA["vda"]?.sha256)
        print("LabChunkTests measured: template \(afterA) bytes stored, clone added \(growth)")

        // One flipped byte in a chunk both use: verify names it for each backup; restore refuses
        // before anything is written or defined.
        let index = try ChunkIndex.parse(
            Array(
                try Data(
                    contentsOf: URL(
                        fileURLWithPath: BackupCatalog(storage: storage).newestBackup(of: b)!.path + "/vda.index"))),
            file: "vda.index")
        guard case .chunk(let shared) = try #require(index.entries.first) else {
            throw LabError(description: "chunk 0 is zero")
        }
        let path = ChunkStore(storage: storage).chunkPath(shared)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        let v = try backupVM(config, ["verify", a, b])
        #expect(v.status == 1)
        let lines = v.out.split(separator: "\n").filter { $0.contains(shared.hex) }
        #expect(lines.count == 2, "named for both backups: \(v.out)")
        #expect(lines.allSatisfy { $0.contains(".quarantine/") }, "moved aside: \(v.out)")
        r = try backupVM(config, ["restore", b, "--as", "tpl2copy", "--to-host", "kvm2"])
        #expect(r.status != 0 && r.err.contains(shared.hex), "\(r.err)")
        #expect(try lab.state("kvm2", "tpl2copy") == "absent", "nothing defined")
        #expect(
            try lab.ssh("kvm2", "ls /var/lib/libvirt/images/ | grep -c tpl2copy || true").trimmingCharacters(
                in: .whitespacesAndNewlines) == "0")
    }

    /// The raw content of a disk image on this machine (a qcow2 converted; `-U`: the guest may run).
    func contentSHA(_ path: String) throws -> String {
        guard path.hasSuffix(".qcow2") else { return try sha256(ofFile: path) }
        let raw = tmp.path + "/content-\(UUID().uuidString.prefix(8)).raw"
        let r = try runTool("/usr/bin/qemu-img", ["convert", "-U", "-f", "qcow2", "-O", "raw", path, raw])
        guard r.status == 0 else { throw LabError(description: "qemu-img convert \(path): \(r.err)") }
        defer { unlink(raw) }
        return try sha256(ofFile: raw)
    }

    /// Issue #19: a disk whose size is a whole number of sectors but not of chunks (18 MiB and 10 MiB:
    /// the last chunk is short), backed up into the chunk store cold and live: export and restore give
    /// the disk back bit for bit.
    @Test("disks of no whole number of chunks, cold and live: export and restore bit-exact")
    func disksOfNoWholeNumberOfChunks() throws {
        let lab = try Lab.require()
        let (vm, coldCopy, liveCopy) = ("odd1", "odd1c", "odd1l")
        for g in [vm, coldCopy, liveCopy] { lab.removeGuest(g) }
        defer { for g in [vm, coldCopy, liveCopy] { lab.removeGuest(g) } }
        let disks = try lab.makeGuest("kvm1", vm, raw: 18, qcow2: 10)
        let vda = try #require(disks["vda"]).path
        let vdb = try #require(disks["vdb"]).path
        let (vdaSHA, vdbFileSHA, vdbContent) = (try sha256(ofFile: vda), try sha256(ofFile: vdb), try contentSHA(vdb))
        for (mode, copy) in [("cold", coldCopy), ("live", liveCopy)] {
            let config = try config(lab, schedule: "\(vm) * 3", profiles: [vm: "Mode=\(mode)"])
            var r = try backupVM(config, [vm])
            #expect(r.status == 0, "\(mode): \(r.err)")
            let m = try manifest(vm)
            #expect(m.mode.rawValue == mode && m.store == .chunks)
            #expect(
                m.disks.map { $0.chunks?.chunks } == [5, 3], "18 MiB: 4 whole chunks and a short one; 10 MiB: 2 and one"
            )
            #expect(try exported(config, vm, "vda") == vdaSHA, "\(mode): vda exported bit for bit")
            // Cold stores the qcow2 file as it is; live its guest-visible content (raw).
            #expect(try exported(config, vm, "vdb") == (mode == "cold" ? vdbFileSHA : vdbContent), "\(mode): vdb")
            r = try backupVM(config, ["restore", vm, "--as", copy, "--to-host", "kvm2"])
            #expect(r.status == 0, "\(mode): \(r.err)")
            #expect(try sha256(ofFile: lab.images("kvm2") + "/\(copy)-vda.raw") == vdaSHA, "\(mode): vda restored")
            #expect(try contentSHA(lab.images("kvm2") + "/\(copy)-vdb.qcow2") == vdbContent, "\(mode): vdb restored")
        }
    }
}
