import Foundation
import Testing
@testable import BackupVMCore

extension Tag {
    /// Real LVM: a Debian hypervisor VM (scripts/lab/lvm) with libvirt and a volume group, reached by
    /// ssh; scripts/test starts it and passes its directory in LVM_DIR.
    @Tag static var lvm: Self
}

/// The LVM hypervisor and one nested guest on two LVs (vda with known data, vdb as "swap"), set up
/// once per test run: the nested TCG guest takes minutes to boot.
final class LVMLab: @unchecked Sendable {
    let dir: String
    let guest = "lg1"
    var sshConfig: String { dir + "/ssh_config" }

    struct Missing: Error, CustomStringConvertible {
        var description: String { "the LVM tier needs the LVM hypervisor VM: run scripts/test (it starts scripts/lab/lvm/lvm-host and sets LVM_DIR)" }
    }

    private static let shared: Result<LVMLab, Error> = Result { try LVMLab() }
    static func require() throws -> LVMLab { try shared.get() }

    private init() throws {
        guard let dir = ProcessInfo.processInfo.environment["LVM_DIR"], !dir.isEmpty,
              FileManager.default.fileExists(atPath: dir + "/ssh_config") else { throw Missing() }
        self.dir = dir
        let cache = (ProcessInfo.processInfo.environment["LAB_CACHE_DIR"] ?? (NSHomeDirectory() + "/.cache/backup_vm-lab")) + "/guest"
        try ssh("mkdir -p /var/lib/libvirt/boot")
        let scp = try runTool("/usr/bin/scp", ["-q", "-F", sshConfig, cache + "/vmlinuz", cache + "/initrd.gz", "lvmhost:/var/lib/libvirt/boot/"])
        guard scp.status == 0 else { throw LabError(description: "scp of the guest kernel: \(scp.err)") }
        let g = guest
        try ssh("lvcreate -q -y -L 16M -n \(g) vg0 >/dev/null; lvcreate -q -y -L 8M -n \(g)-swap vg0 >/dev/null")
        let fill = try runTool("/bin/sh", ["-c", "'\(Paths.packageRoot)/scripts/lab/disk-pattern' \(g) vda 16 | ssh -F '\(sshConfig)' lvmhost 'dd of=/dev/vg0/\(g) bs=1M iflag=fullblock oflag=direct status=none'"], timeout: 300)
        guard fill.status == 0 else { throw LabError(description: "filling the LV: \(fill.err)") }
        let xml = """
            <domain type='qemu'><name>\(g)</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
            <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/var/lib/libvirt/boot/vmlinuz</kernel>
            <initrd>/var/lib/libvirt/boot/initrd.gz</initrd><cmdline>console=ttyS0</cmdline></os>
            <features><acpi/></features><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
            <disk type='block' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/><source dev='/dev/vg0/\(g)'/><target dev='vda' bus='virtio'/></disk>
            <disk type='block' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/><source dev='/dev/vg0/\(g)-swap'/><target dev='vdb' bus='virtio'/></disk>
            <serial type='file'><source path='/var/lib/libvirt/images/\(g)-console.log' append='on'/><target port='0'/></serial>
            <memballoon model='none'/></devices></domain>
            """
        let tmp = TempDir("lvmxml")
        tmp.write("g.xml", xml)
        try ssh("virsh -q define /dev/stdin >/dev/null", stdinFile: tmp.path + "/g.xml")
        try ssh("virsh -q start \(g) >/dev/null")
        guard eventually(timeout: 900, { ((try? self.console()) ?? "").contains("LAB-GUEST-READY") }) else {
            throw LabError(description: "the nested guest did not boot within 900 s")
        }
    }

    @discardableResult
    func ssh(_ command: String, stdinFile: String? = nil, timeout: TimeInterval = 300) throws -> String {
        let r: (status: Int32, out: String, err: String)
        if let stdinFile {
            r = try runTool("/bin/sh", ["-c", "ssh -F '\(sshConfig)' lvmhost \"$0\" < '\(stdinFile)'", command], timeout: timeout)
        } else {
            r = try runTool("/usr/bin/ssh", ["-F", sshConfig, "lvmhost", command], timeout: timeout)
        }
        guard r.status == 0 else { throw LabError(description: "ssh lvmhost \(command): exit \(r.status): \(r.err)") }
        return r.out
    }

    func console() throws -> String { try ssh("cat /var/lib/libvirt/images/\(guest)-console.log") }
    func count(_ needle: String) -> Int { ((try? console()) ?? "").components(separatedBy: needle).count - 1 }
    func state() throws -> String { try ssh("virsh domstate \(guest)").trimmingCharacters(in: .whitespacesAndNewlines) }
    func snapshotsLeft() throws -> [String] { try ssh("lvs --noheadings -o lv_name vg0").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.contains("bvmsnap") } }

    func config(_ tmp: TempDir, profile: String) -> String {
        tmp.write("backup_vm.d/backup_vm.conf", """
            HostServers=lvmhost
            BackupStorage=\(tmp.path)/storage
            SshConfig=\(sshConfig)
            SyslogSocket=\(tmp.path)/syslog.sock
            ShutdownTimeout=600
            """)
        tmp.write("backup_vm.d/sheduler.conf", "\(guest) * 5\n")
        tmp.write("vmsnapshot.d/default", "Mode=cold\nWorkPath=/var/lib/backup_vm\n")
        tmp.write("vmsnapshot.d/\(guest)", profile + "\n")
        return tmp.path
    }
}

@Suite("lab: LVM snapshots, hot and cold", .tags(.lvm), .serialized)
struct LabLVMTests {
    let tmp = TempDir("lvm")

    @Test("hot: emergency sync, RAM saved and restored without a reboot, one LV excluded, bit-identical restore into a new LV")
    func hotBackup() throws {
        let lab = try LVMLab.require()
        let g = lab.guest
        let config = lab.config(tmp, profile: "Mode=hot\nExcludeLVs=vg0/\(g)-swap\nSnapshotSize=8M")
        let ready = lab.count("LAB-GUEST-READY"), syncs = lab.count("sysrq: Emergency Sync")
        let r = try backupVM(config, [g], timeout: 900)
        #expect(r.status == 0, "\(r.err)")
        #expect(try lab.state() == "running")
        #expect(lab.count("sysrq: Emergency Sync") == syncs + 1, "the emergency sync reached the guest")
        #expect(lab.count("LAB-GUEST-READY") == ready, "restored from its RAM state, not rebooted")
        let sync = r.err.range(of: "RAM state saved")!, snap = r.err.range(of: "snapshot created")!, back = r.err.range(of: "RAM state restored")!
        let copied = r.err.range(of: "disk copied")!
        #expect(sync.lowerBound < snap.lowerBound && snap.lowerBound < back.lowerBound && back.lowerBound < copied.lowerBound,
                "save, snapshot, restore, then copy")
        #expect(try lab.snapshotsLeft().isEmpty)
        let backup = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: g))
        let m = try Manifest.read(backupDirectory: backup.path)
        #expect(m.mode == "hot" && m.disks.map(\.target) == ["vda"] && m.excluded.map(\.target) == ["vdb"])
        #expect(m.ramState != nil && m.ramState!.rawBytes > 0)
        #expect(try backupVM(config, ["verify", g]).status == 0)
        let rr = try backupVM(config, ["restore", g, "--as", "\(g)r"], timeout: 900)
        #expect(rr.status == 0, "\(rr.err)")
        #expect((try? lab.ssh("cmp /dev/vg0/\(g) /dev/vg0/\(g)r && echo same")) == "same\n", "bit-identical in a new LV")
        _ = try? lab.ssh("virsh undefine \(g)r; lvremove -q -f vg0/\(g)r")
    }

    @Test("a snapshot too small for the writes during the copy: fails as overflowed, no snapshot left, VM running, older backups kept")
    func overflow() throws {
        let lab = try LVMLab.require()
        let g = lab.guest
        let config = lab.config(tmp, profile: "Mode=hot\nExcludeLVs=vg0/\(g)-swap\nSnapshotSize=8M")
        #expect(try backupVM(config, [g], timeout: 900).status == 0)
        let before = BackupCatalog(storage: tmp.path + "/storage").backups(of: g).map(\.id)
        tmp.write("vmsnapshot.d/\(g)", "Mode=hot\nExcludeLVs=vg0/\(g)-swap\nSnapshotSize=4M\n")
        let job = try ChildProcess(Paths.binary("backup_vm"), [g, "--config-dir", config])
        defer { job.stop() }
        // As soon as our snapshot exists, write more into the origin than the snapshot can hold.
        #expect(eventually(timeout: 300) { ((try? lab.snapshotsLeft()) ?? []).count == 1 })
        try lab.ssh("dd if=/dev/urandom of=/dev/vg0/\(g) bs=1M count=12 oflag=direct status=none")
        #expect(job.wait(timeout: 600))
        #expect(job.process.terminationStatus == 1)
        #expect(job.standardError.contains("snapshot overflowed"), "\(job.standardError.suffix(800))")
        #expect(try lab.snapshotsLeft().isEmpty, "the snapshot is gone")
        #expect(try lab.state() == "running")
        #expect(BackupCatalog(storage: tmp.path + "/storage").backups(of: g).map(\.id) == before, "earlier backups intact")
    }

    @Test("cold: shut down, snapshot, started, and only then copied")
    func coldBackup() throws {
        let lab = try LVMLab.require()
        let g = lab.guest
        let config = lab.config(tmp, profile: "Mode=cold\nExcludeLVs=vg0/\(g)-swap\nSnapshotSize=8M")
        let r = try backupVM(config, [g], timeout: 900)
        #expect(r.status == 0, "\(r.err)")
        let down = r.err.range(of: "shut down")!, snap = r.err.range(of: "snapshot created")!
        let started = r.err.range(of: "started again")!, copied = r.err.range(of: "disk copied")!
        #expect(down.lowerBound < snap.lowerBound && snap.lowerBound < started.lowerBound && started.lowerBound < copied.lowerBound)
        #expect(try lab.state() == "running")
        #expect(try lab.snapshotsLeft().isEmpty)
        let m = try Manifest.read(backupDirectory: BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: g)!.path)
        #expect(m.mode == "cold" && m.downtimeSeconds > 0)
    }
}
