import Foundation
import Testing

@testable import BackupVMCore

/// Faults of live backups on real libvirt 9.0 / QEMU 7.2 (issue #19 items 7 and 8): a scratch file
/// system too small for the job, one that fills during the copy while the guest overwrites its
/// disk, the export's reader killed, libvirtd stopped and started again mid-copy. After each: the
/// guest runs on (same qemu, never left paused, no failed write seen), no job, socket or scratch
/// file is left, and the next live backup of the busy guest is good and one instant.
@Suite("lab: live backup faults (scratch space, killed reader, libvirtd restart)", .tags(.lab), .serialized)
struct LabLiveFaultTests {
    let tmp = TempDir("lab-live-fault")

    /// A tmpfs of `megabytes` on kvm1 as the VM's WorkPath. Mounted before the guest starts: libvirt
    /// gives each qemu a mount namespace of its own, made from the host's at its start.
    static let small = "/var/lib/backup_vm/small"

    func mountSmall(_ lab: Lab, megabytes: Int) throws {
        try lab.ssh(
            "kvm1",
            "umount \(Self.small) 2>/dev/null; mkdir -p \(Self.small) && mount -t tmpfs -o size=\(megabytes)m,mode=755 bvmsmall \(Self.small)"
        )
    }

    func unmountSmall(_ lab: Lab) { _ = try? lab.ssh("kvm1", "umount \(Self.small); rmdir \(Self.small); true") }

    /// What a guest must never show: a failed write (our overwriter's or the stamp writer's warning, the
    /// kernel's I/O error lines).
    static func failedWrites(_ console: String) -> [String] {
        console.split(separator: "\n").map(String.init).filter {
            $0.contains("LAB-GUEST-WARNING") || $0.contains("I/O error") || $0.contains("Buffer I/O")
        }
    }

    static func overwritePasses(_ console: String) -> Int {
        console.components(separatedBy: "LAB-GUEST-OVERWRITE: pass").count - 1
    }

    /// Nothing of a live job is left on kvm1: no backup job on the domain, no job directory (socket,
    /// scratch files) in the VM's working directory.
    func expectNothingLeft(_ lab: Lab, _ vm: String, workPath: String = "/var/lib/backup_vm") throws {
        let job = try lab.ssh("kvm1", "virsh domjobinfo \(vm) | head -n 1")
        #expect(job.contains("None"), "no job left: \(job)")
        let left = try lab.ssh("kvm1", "ls -a \(workPath)/\(vm) 2>/dev/null; true")
        #expect(!left.contains(".live") && !left.contains(".partial"), "left in the working path: \(left)")
    }

    /// The next live backup of the busy guest is good: done, and vdb's stamps one instant.
    func expectGoodBackup(_ lab: Lab, _ vm: String, _ config: String) throws {
        let r = try backupVM(config, [vm])
        #expect(r.status == 0, "\(r.err.suffix(2000))")
        let backup = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm))
        let stored = tmp.path + "/\(vm)-vdb.raw"
        try runTool("/bin/sh", ["-c", "lzop -dc '\(backup.path)/vdb.raw.lzo' > '\(stored)'"])
        let stamps = try LabLiveTests.checkStamps(stored)
        #expect(stamps.consistent && stamps.max > 0, "\(stamps.out)")
        #expect(try backupVM(config, ["verify", vm]).status == 0)
    }

    /// The reader of `export` once it runs (within `timeout` s).
    static func reader(of vm: String, export: String, workPath: String, timeout: TimeInterval) -> pid_t? {
        var pid: pid_t?
        _ = eventually(timeout: timeout) {
            pid = nbdcopy(of: vm, export: export, workPath: workPath)
            return pid != nil
        }
        return pid
    }

    static func nbdcopy(of vm: String, export: String, workPath: String) -> pid_t? {
        let wanted = "nbd+unix:///\(export)?socket=\(workPath)/\(vm)/"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { continue }
            let argv = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if argv.first?.hasSuffix("nbdcopy") == true, argv.contains(where: { $0.hasPrefix(wanted) }) { return pid }
        }
        return nil
    }

    @Test("a scratch file system too small for the job: refused before the begin, the overwriting guest never touched")
    func scratchTooSmall() throws {
        let lab = try Lab.require()
        let vm = "lf1"
        lab.removeGuest(vm)
        try mountSmall(lab, megabytes: 96)
        defer {
            lab.removeGuest(vm)
            unmountSmall(lab)
        }
        try lab.makeGuest("kvm1", vm, raw: 64, extra: ["--overwrite", "vda", "--heartbeat", "1"])
        #expect(eventually(timeout: 60) { lab.console("kvm1", vm).contains("LAB-GUEST-OVERWRITE: started") })
        let config = lab.config(
            tmp, hosts: "kvm1", schedule: "\(vm) * 3", profiles: [vm: "Mode=live\nWorkPath=\(Self.small)"])
        let pid = try LabLiveTests.qemuPid(lab, "kvm1", vm)

        let r = try backupVM(config, [vm])
        #expect(r.status == 1)
        #expect(
            r.err.contains("no room for the live backup job of \(vm) on kvm1")
                && r.err.contains("nothing was begun"), "\(r.err.suffix(1500))")
        try expectNothingLeft(lab, vm, workPath: Self.small)
        #expect(try LabLiveTests.qemuPid(lab, "kvm1", vm) == pid && lab.state("kvm1", vm) == "running")
        let passes = Self.overwritePasses(lab.console("kvm1", vm))
        #expect(eventually(timeout: 120) { Self.overwritePasses(lab.console("kvm1", vm)) > passes }, "it writes on")
        #expect(Self.failedWrites(lab.console("kvm1", vm)).isEmpty)
    }

    @Test(
        "the scratch file system fills during the copy while the guest overwrites its disk: the job is ended, the guest resumed, it never sees a failed write; the next backup is good"
    )
    func scratchFillsDuringCopy() throws {
        let lab = try Lab.require()
        let vm = "lf2"
        lab.removeGuest(vm)
        try mountSmall(lab, megabytes: 320)
        defer {
            lab.removeGuest(vm)
            unmountSmall(lab)
        }
        try lab.makeGuest(
            "kvm1", vm, raw: 64, qcow2: 8, extra: ["--overwrite", "vda", "--writer", "vdb", "--heartbeat", "1"])
        #expect(eventually(timeout: 60) { lab.console("kvm1", vm).contains("LAB-GUEST-WRITER: k=") })
        let config = lab.config(
            tmp, hosts: "kvm1", schedule: "\(vm) * 3", profiles: [vm: "Mode=live\nWorkPath=\(Self.small)"])
        let pid = try LabLiveTests.qemuPid(lab, "kvm1", vm)

        let job = try ChildProcess(Paths.binary("backup_vm"), [vm, "--config-dir", config])
        defer { job.stop() }
        // vda's reader is held while someone else takes every free byte of the scratch's file system;
        // the overwriting guest's next write of a block not yet kept then fails in qemu, which pauses
        // it. The reader goes on then: a paused qemu first drains its exports' requests, and those of
        // a stopped reader would hold it (and libvirt's lock) until it reads again.
        let reader = try #require(Self.reader(of: vm, export: "vda", workPath: Self.small, timeout: 120))
        kill(reader, SIGSTOP)
        try lab.ssh(
            "kvm1", "dd if=/dev/zero of=\(Self.small)/filler bs=1M 2>/dev/null; df -P \(Self.small) | tail -n 1")
        let pausedSeen = eventually(timeout: 30) {
            (try? lab.ssh("kvm1", "virsh domstate --reason \(vm)"))?.contains("I/O error") == true
        }
        kill(reader, SIGCONT)
        #expect(job.wait(timeout: 120))
        #expect(job.process.terminationStatus == 1)
        let paused = job.standardError.contains("qemu paused \(vm) on kvm1 during its live backup")
        let low = job.standardError.contains("ran low during the copy")
        #expect(paused || low, "\(job.standardError.suffix(2000))")
        if paused {
            #expect(job.standardError.contains("resumed (its failed write retried; the guest saw no error)"))
        }
        print(
            "LabLiveFaultTests: the scratch filled; paused seen by the test: \(pausedSeen); the watch found "
                + (paused ? "the guest paused (resumed)" : "the room low"))
        try expectNothingLeft(lab, vm, workPath: Self.small)
        #expect(try LabLiveTests.qemuPid(lab, "kvm1", vm) == pid, "the same qemu")
        #expect(eventually(timeout: 10) { (try? lab.state("kvm1", vm)) == "running" })
        let passes = Self.overwritePasses(lab.console("kvm1", vm))
        #expect(eventually(timeout: 120) { Self.overwritePasses(lab.console("kvm1", vm)) > passes }, "it writes on")
        #expect(Self.failedWrites(lab.console("kvm1", vm)).isEmpty, "\(Self.failedWrites(lab.console("kvm1", vm)))")

        try lab.ssh("kvm1", "rm -f \(Self.small)/filler")
        try expectGoodBackup(lab, vm, config)
        try expectNothingLeft(lab, vm, workPath: Self.small)
    }

    @Test("the export's reader killed mid-copy: the job fails in one line, nothing is left, the next backup is good")
    func readerKilled() throws {
        let lab = try Lab.require()
        let vm = "lf3"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 64, qcow2: 8, extra: ["--writer", "vdb", "--heartbeat", "1"])
        #expect(eventually(timeout: 60) { lab.console("kvm1", vm).contains("LAB-GUEST-WRITER: k=") })
        let config = lab.config(tmp, hosts: "kvm1", schedule: "\(vm) * 3", profiles: [vm: "Mode=live"])
        let pid = try LabLiveTests.qemuPid(lab, "kvm1", vm)

        let job = try ChildProcess(Paths.binary("backup_vm"), [vm, "--config-dir", config])
        defer { job.stop() }
        let reader = try #require(Self.reader(of: vm, export: "vda", workPath: "/var/lib/backup_vm", timeout: 120))
        kill(reader, SIGKILL)
        #expect(job.wait(timeout: 120))
        #expect(job.process.terminationStatus == 1, "\(job.standardError.suffix(1500))")
        try expectNothingLeft(lab, vm)
        #expect(try LabLiveTests.qemuPid(lab, "kvm1", vm) == pid && lab.state("kvm1", vm) == "running")
        try expectGoodBackup(lab, vm, config)
        try expectNothingLeft(lab, vm)
        #expect(Self.failedWrites(lab.console("kvm1", vm)).isEmpty)
    }

    @Test(
        "libvirtd stopped mid-copy and started again while the job is being ended: the end is retried, nothing is left, the next backup is good"
    )
    func libvirtdRestart() throws {
        let lab = try Lab.require()
        let vm = "lf4"
        lab.removeGuest(vm)
        defer {
            _ = try? runTool(Paths.packageRoot + "/scripts/lab/lab", ["start-libvirtd", lab.dir, "kvm1"])
            lab.removeGuest(vm)
        }
        try lab.makeGuest("kvm1", vm, raw: 64, qcow2: 8, extra: ["--writer", "vdb", "--heartbeat", "1"])
        #expect(eventually(timeout: 60) { lab.console("kvm1", vm).contains("LAB-GUEST-WRITER: k=") })
        let config = lab.config(tmp, hosts: "kvm1", schedule: "\(vm) * 3", profiles: [vm: "Mode=live"])
        let pid = try LabLiveTests.qemuPid(lab, "kvm1", vm)

        let job = try ChildProcess(Paths.binary("backup_vm"), [vm, "--config-dir", config])
        defer { job.stop() }
        let reader = try #require(Self.reader(of: vm, export: "vda", workPath: "/var/lib/backup_vm", timeout: 120))
        kill(reader, SIGSTOP)
        let stop = try runTool(Paths.packageRoot + "/scripts/lab/lab", ["stop-libvirtd", lab.dir, "kvm1"])
        #expect(stop.status == 0, "\(stop.err)")
        kill(reader, SIGCONT)
        // The copy goes on (qemu serves the exports); its end finds libvirtd away and tries again.
        let endFailed = eventually(timeout: 120) {
            job.standardError.contains("ending the live backup job failed (attempt 1") || !job.isRunning
        }
        #expect(endFailed)
        let start = try runTool(Paths.packageRoot + "/scripts/lab/lab", ["start-libvirtd", lab.dir, "kvm1"])
        #expect(start.status == 0, "\(start.err)")
        #expect(job.wait(timeout: 180))
        print(
            "LabLiveFaultTests: libvirtd restart: backup_vm exit \(job.process.terminationStatus); "
                + "\(job.standardError.split(separator: "\n").suffix(3).joined(separator: " | "))")
        if job.process.terminationStatus == 0 {
            #expect(job.standardError.contains("ending the live backup job failed (attempt 1"), "the end was retried")
        }
        try expectNothingLeft(lab, vm)
        #expect(try LabLiveTests.qemuPid(lab, "kvm1", vm) == pid && lab.state("kvm1", vm) == "running")
        try expectGoodBackup(lab, vm, config)
        try expectNothingLeft(lab, vm)
    }
}
