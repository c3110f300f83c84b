import Foundation
import Testing

@testable import BackupVMCore

/// Mode=live on real libvirt 9.0 / QEMU 7.2 in the lab (issue #10): a running TCG guest is backed up
/// through libvirt's pull-mode backup job while it keeps running and writing, and a worker killed
/// mid-copy leaves a job that the next start ends.
@Suite("lab: live backups (libvirt backup API)", .tags(.lab), .serialized)
struct LabLiveTests {
    let tmp = TempDir("lab-live")

    /// The guest's qemu process on its host (the lab hosts share this machine's pid namespace).
    static func qemuPid(_ lab: Lab, _ host: String, _ vm: String) throws -> String {
        try lab.ssh(host, "cat /run/libvirt/qemu/\(vm).pid").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The pid of the nbdcopy that reads an export of `vm`'s backup job, if one runs now.
    static func nbdcopy(of vm: String, export: String) -> pid_t? {
        let wanted = "nbd+unix:///\(export)?socket=/var/lib/backup_vm/\(vm)/"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { continue }
            let argv = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if argv.first?.hasSuffix("nbdcopy") == true, argv.contains(where: { $0.hasPrefix(wanted) }) { return pid }
        }
        return nil
    }

    /// Holds the reader of `export` (SIGSTOP) as soon as it starts, runs `whileHeld` and lets it go
    /// on `seconds` later (SIGCONT): the guest writes meanwhile, and the job's view must not move.
    /// False if no reader showed up.
    static func holdReader(
        of vm: String, export: String, seconds: UInt32, within timeout: TimeInterval, whileHeld: () -> Void
    ) -> Bool {
        var pid: pid_t?
        guard
            eventually(
                timeout: timeout,
                {
                    pid = nbdcopy(of: vm, export: export)
                    return pid != nil
                }), let pid
        else { return false }
        kill(pid, SIGSTOP)
        whileHeld()
        sleep(seconds)
        kill(pid, SIGCONT)
        return true
    }

    /// The guest's heartbeats as this machine sees them arrive in the console log: the longest
    /// silence between two of them while the backup ran is the downtime the guest felt.
    final class HeartbeatWatch: @unchecked Sendable {
        let path: String
        private let lock = NSLock()
        private var arrivals: [Date] = []
        private var running = true
        private var thread: Thread?

        init(_ path: String) {
            self.path = path
            let t = Thread { [weak self] in self?.poll() }
            thread = t
            t.start()
        }

        private func count() -> Int {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            return text.components(separatedBy: "LAB-GUEST-UPTIME:").count - 1
        }

        private func poll() {
            var seen = count()
            while lock.withLock({ running }) {
                let now = count()
                if now > seen { lock.withLock { arrivals.append(Date()) } }
                seen = now
                usleep(100_000)
            }
        }

        func stop() -> [Date] {
            lock.withLock {
                running = false
                return arrivals
            }
        }

        /// The longest gap between arrivals (and from the first to the last bound).
        static func longestGap(_ arrivals: [Date]) -> TimeInterval {
            zip(arrivals, arrivals.dropFirst()).map { $1.timeIntervalSince($0) }.max() ?? .infinity
        }
    }

    /// The first 256 KiB (the stamp writer's blocks) checked by scripts/lab/check-stamps.
    static func checkStamps(_ file: String) throws -> (consistent: Bool, max: Int, out: String) {
        let r = try runTool(Paths.packageRoot + "/scripts/lab/check-stamps", [file])
        let max = r.out.split(separator: "\n").first { $0.hasPrefix("max ") }.flatMap { Int($0.dropFirst(4)) } ?? -1
        return (r.status == 0, max, r.out + r.err)
    }

    @Test(
        "live: the guest runs and writes on (same qemu, no heartbeat gap over 2 s, no boot), the stored disks are one instant, restored in their format, boot"
    )
    func zeroDowntimePointInTime() throws {
        let lab = try Lab.require()
        let (vm, copy) = ("live1", "live1copy")
        lab.removeGuest(vm)
        lab.removeGuest(copy)
        defer {
            lab.removeGuest(vm)
            lab.removeGuest(copy)
        }
        let disks = try lab.makeGuest(
            "kvm1", vm, raw: 256, qcow2: 8, extra: ["--heartbeat", "1", "--writer", "vdb", "--agent"])
        #expect(eventually(timeout: 60) { lab.console("kvm1", vm).contains("LAB-GUEST-WRITER: k=") }, "writer runs")
        let config = lab.config(tmp, schedule: "\(vm) * 3", profiles: [vm: "Mode=live"])
        let pid = try Self.qemuPid(lab, "kvm1", vm)
        let ready = lab.readyCount("kvm1", vm)

        let watch = HeartbeatWatch(lab.images("kvm1") + "/\(vm)-console.log")
        let job = try ChildProcess(Paths.binary("backup_vm"), [vm, "--config-dir", config])
        defer { job.stop() }
        // vda's reader (256 MiB: long enough to be caught as it starts) is held 3 s while the guest
        // writes on into vdb (about 250 writes a second), and vdb is read only after that: what is
        // stored must still be vdb as it was at the job's begin, no later than the live disk read
        // during the hold.
        let vdbPath = try #require(disks["vdb"]).path
        var atHold: (consistent: Bool, max: Int, out: String)?
        let held = Self.holdReader(of: vm, export: "vda", seconds: 3, within: 120) {
            let copy = tmp.path + "/vdb-at-hold.raw"
            _ = try? runTool("/usr/bin/qemu-img", ["convert", "-U", "-O", "raw", vdbPath, copy])
            atHold = try? Self.checkStamps(copy)
        }
        #expect(held, "\(job.standardError)")
        #expect(job.wait(timeout: 300))
        sleep(2)
        let beats = watch.stop()
        #expect(job.process.terminationStatus == 0, "\(job.standardError)")
        let gap = HeartbeatWatch.longestGap(beats)
        #expect(gap <= 2.0, "longest heartbeat gap \(gap) s over \(beats.count) beats")
        #expect(try Self.qemuPid(lab, "kvm1", vm) == pid, "the same qemu process")
        #expect(lab.readyCount("kvm1", vm) == ready, "no new boot")
        #expect(try lab.state("kvm1", vm) == "running")

        let backup = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm))
        let m = try Manifest.read(backupDirectory: backup.path)
        #expect(m.mode == .live && m.downtimeSeconds == 0 && m.consistency == .application)
        #expect(m.disks.map(\.file) == ["vda.raw.lzo", "vdb.raw.lzo"] && m.disks.map(\.format) == [.raw, .qcow2])
        let console = lab.console("kvm1", vm)
        // qemu-ga logs nothing while a file system is frozen: the thaw shows as its hook's line.
        #expect(
            console.contains("{\"execute\":\"guest-fsfreeze-freeze\"}") && console.contains("LAB-GUEST-FSFREEZE: thaw"),
            "the agent froze and thawed")

        // One instant: vdb's stamps are exactly the state after writes 1..M; the live disk moved on.
        let storedVDA = tmp.path + "/vda.raw"
        let storedVDB = tmp.path + "/vdb.raw"
        try runTool("/bin/sh", ["-c", "lzop -dc '\(backup.path)/vda.raw.lzo' > '\(storedVDA)'"])
        try runTool("/bin/sh", ["-c", "lzop -dc '\(backup.path)/vdb.raw.lzo' > '\(storedVDB)'"])
        #expect(try sha256(ofFile: storedVDA) == disks["vda"]?.sha256, "vda as make-guest wrote it")
        let stored = try Self.checkStamps(storedVDB)
        #expect(stored.consistent && stored.max > 0, "\(stored.out)")
        let hold = try #require(atHold, "the live disk was read during the hold")
        #expect(
            stored.max <= hold.max, "nothing written after the job began: stored \(stored.max), at the hold \(hold.max)"
        )
        let liveNow = tmp.path + "/vdb-now.raw"
        try runTool("/usr/bin/qemu-img", ["convert", "-U", "-O", "raw", vdbPath, liveNow])
        let now = try Self.checkStamps(liveNow)
        print(
            "LabLiveTests measured: longest heartbeat gap \(String(format: "%.2f", gap)) s over \(beats.count) beats;"
                + " stamps stored \(stored.max), live at the hold \(hold.max), live afterwards \(now.max);"
                + " consistency \(m.consistency?.rawValue ?? "-"), quiesce \(m.quiesceSeconds ?? -1) s")
        #expect(now.max > hold.max + 100, "the guest wrote on during the hold: \(hold.max) then \(now.max)")

        // Restored on the other host: identical to the stored instant, vdb a qcow2 again; it boots.
        let rr = try backupVM(config, ["restore", vm, "--as", copy, "--to-host", "kvm2"])
        #expect(rr.status == 0, "\(rr.err)")
        let restoredVDA = lab.images("kvm2") + "/\(copy)-vda.raw"
        let restoredVDB = lab.images("kvm2") + "/\(copy)-vdb.qcow2"
        #expect(try runTool("/usr/bin/cmp", [storedVDA, restoredVDA]).status == 0)
        let info = try runTool("/usr/bin/qemu-img", ["info", "-U", restoredVDB]).out
        #expect(info.contains("file format: qcow2"), "\(info)")
        let cmp = try runTool(
            "/usr/bin/qemu-img", ["compare", "-U", "-f", "raw", "-F", "qcow2", storedVDB, restoredVDB])
        #expect(cmp.status == 0, "restored qcow2 holds the stored instant: \(cmp.out) \(cmp.err)")
        try lab.ssh("kvm2", "virsh start \(copy)")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", copy) >= 1 }, "the restored guest boots")
        #expect(try backupVM(config, ["verify", vm]).status == 0)
    }

    @Test(
        "#19 item 6: the copy of a live-backed-up guest whose console is in a directory named after it: refused until that directory exists on the target, then restored with only the file renamed, started, seen booting, removed"
    )
    func restoredCopyOfALiveBackupBoots() throws {
        let lab = try Lab.require()
        let (vm, copy) = ("live3", "live3copy")
        lab.removeGuest(vm)
        lab.removeGuest(copy)
        defer {
            lab.removeGuest(vm)
            lab.removeGuest(copy)
        }
        // /var/lib/libvirt/images/live3-consoles/console-live3.log: the VM's name in the directory and
        // in the file (removeGuest removes images/NAME-* on both hosts).
        let consoles = "/var/lib/libvirt/images/\(vm)-consoles"
        try lab.makeGuest("kvm1", vm, raw: 16, extra: ["--console", "\(consoles)/console-\(vm).log"])
        let config = lab.config(tmp, schedule: "\(vm) * 3", profiles: [vm: "Mode=live"])
        let backup = try backupVM(config, [vm])
        #expect(backup.status == 0, "\(backup.err)")
        let m = try Manifest.read(
            backupDirectory: try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm)).path)
        #expect(m.mode == .live)

        // kvm2 has no such directory: refused before anything is written or defined there.
        let refused = try backupVM(config, ["restore", vm, "--as", copy, "--to-host", "kvm2", "--start"])
        #expect(refused.status == 1, "\(refused.out)")
        #expect(
            refused.err.contains("\(consoles) does not exist on kvm2") && refused.err.contains("mkdir -p"),
            "\(refused.err)")
        #expect(try lab.state("kvm2", copy) == "absent")
        #expect(try lab.ssh("kvm2", "ls /var/lib/libvirt/images | grep -c \(copy) || true") == "0\n", "no disk written")

        try lab.ssh("kvm2", "mkdir -p \(consoles)")
        let restored = try backupVM(config, ["restore", vm, "--as", copy, "--to-host", "kvm2", "--start"])
        #expect(restored.status == 0, "\(restored.err)")
        let console = lab.images("kvm2") + "/\(vm)-consoles/console-\(copy).log"
        #expect(
            eventually(timeout: 90) {
                ((try? String(contentsOfFile: console, encoding: .utf8)) ?? "").contains("LAB-GUEST-READY")
            }, "the copy started and booted, its console beside the original's name: \(console)")
        #expect(
            !FileManager.default.fileExists(atPath: lab.images("kvm2") + "/\(copy)-consoles"), "no directory renamed")
        #expect(try lab.state("kvm1", vm) == "running", "the original runs on")
        lab.removeGuest(copy)
        #expect(try lab.state("kvm2", copy) == "absent", "the copy removed")
    }

    @Test(
        "a daemon SIGKILLed mid-copy leaves the backup job running; the next start ends it, cleans up, retries to done")
    func killedWorker() throws {
        let lab = try Lab.require()
        let vm = "live2"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 16, qcow2: 8)
        let config = lab.config(tmp, hosts: "kvm1", schedule: "\(vm) * 3", profiles: [vm: "Mode=live"])
        let pid = try Self.qemuPid(lab, "kvm1", vm)
        let spool = Spool(root: config + "/spool")
        #expect(try backupVM(config, ["enqueue", vm]).status == 0)
        let first = try ChildProcess(Paths.binary("backup_vmd"), ["--config-dir", config, "--console"])
        defer { first.stop() }
        var reader: pid_t?
        #expect(
            eventually(timeout: 300) {
                reader = Self.nbdcopy(of: vm, export: "vda")
                return reader != nil
            }, "\(first.standardError.suffix(1500))")
        if let reader { kill(reader, SIGSTOP) }
        first.signal(SIGKILL)
        #expect(first.wait(timeout: 30))
        if let reader { kill(reader, SIGKILL) }
        let work = lab.work("kvm1") + "/\(vm)"
        let jobXML = try lab.ssh("kvm1", "virsh backup-dumpxml \(vm)")
        #expect(jobXML.contains("/var/lib/backup_vm/\(vm)/."), "the job runs on without its worker: \(jobXML)")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []
        #expect(leftovers.contains { $0.hasSuffix(".live") }, "\(leftovers)")

        let second = try ChildProcess(Paths.binary("backup_vmd"), ["--config-dir", config, "--console"])
        defer { second.stop() }
        #expect(eventually(timeout: 300) { spool.names(in: .done).count == 1 }, "\(second.standardError.suffix(1500))")
        second.signal(SIGTERM)
        #expect(second.wait(timeout: 120))
        #expect(
            second.standardError.contains("live backup job ended, its scratch files and socket removed"),
            "\(second.standardError.suffix(1500))")
        let jobs = try lab.ssh("kvm1", "virsh domjobinfo \(vm) | head -n 1")
        #expect(jobs.contains("None"), "no job left: \(jobs)")
        let after = (try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []
        #expect(!after.contains { $0.hasSuffix(".live") || $0.hasSuffix(".partial") }, "\(after)")
        #expect(try Self.qemuPid(lab, "kvm1", vm) == pid && lab.state("kvm1", vm) == "running", "the guest ran on")
        #expect(BackupCatalog(storage: tmp.path + "/storage").backups(of: vm).count == 1)
    }
}
