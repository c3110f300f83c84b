import Foundation
import Testing

@testable import BackupVMCore

/// What the operator sees and is told, with the real binaries on the lab: a manual run's progress
/// line under a pty (and plain lines without one), `status` and `status --json` while a backup copies
/// (bytes increasing) and after, the metrics file after a success and a failure (read by the
/// Prometheus parser), the notifier's environment, and a hanging notifier killed by its timeout.
@Suite("lab: operator's view", .tags(.lab), .serialized)
struct LabOperatorTests {
    let tmp = TempDir("lab-operator")

    /// Slows a copy on the hypervisor by stopping its `dd` most of the time, so `status` can watch it
    /// (the lab's disks copy in about a second otherwise). The lab's hosts share this machine's pids.
    final class Throttle: @unchecked Sendable {
        let pattern: String
        private let lock = NSLock()
        private var stopped = false
        private let ended = DispatchSemaphore(value: 0)

        init(pattern: String) {
            self.pattern = pattern
            Thread { [self] in
                while !lock.withLock({ stopped }) {
                    _ = try? runTool("/usr/bin/pkill", ["-STOP", "-f", pattern])
                    usleep(400_000)
                    _ = try? runTool("/usr/bin/pkill", ["-CONT", "-f", pattern])
                    usleep(20_000)
                }
                _ = try? runTool("/usr/bin/pkill", ["-CONT", "-f", pattern])
                ended.signal()
            }.start()
        }

        func stop() {
            lock.withLock { stopped = true }
            ended.wait()
        }
    }

    func status(_ config: String) throws -> StatusReport {
        let r = try backupVM(config, ["status", "--json"])
        guard r.status == 0 else { throw LabError(description: "status --json: \(r.err)") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(StatusReport.self, from: Data(r.out.utf8))
    }

    @Test("progress line on a pty, status while copying, metrics and the notifier after a success and a failure")
    func operatorView() throws {
        let lab = try Lab.require()
        let vm = "op1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        let disks = try lab.makeGuest("kvm1", vm, raw: 128)
        let envFile = tmp.path + "/notified.env"
        tmp.write("notify.sh", "#!/bin/sh\nenv | grep '^BACKUP_VM_' | sort > '\(envFile)'\n")
        chmod(tmp.path + "/notify.sh", 0o755)
        let metrics = tmp.path + "/backup_vm.prom"
        let config = lab.config(
            tmp, schedule: "\(vm) * 3\nghost1 * 3",
            extraMain: "MetricsFile=\(metrics)\nNotifyCommand=\(tmp.path)/notify.sh\nNotifyOn=always")

        // A manual run on a pty (script(1)), its copy slowed so status sees it.
        let run = try ChildProcess(
            "/usr/bin/script", ["-qfec", "\(Paths.binary("backup_vm")) \(vm) --config-dir \(config)", "/dev/null"])
        var samples: [Int64] = []
        var copying: String?
        do {
            let throttle = Throttle(pattern: "dd if=/var/lib/libvirt/images/\(vm)-vda.raw")
            defer { throttle.stop() }
            _ = eventually(timeout: 240) {
                guard let s = try? status(config), let p = s.running.first?.progress, p.phase == .copy,
                    let done = p.bytesDone, done > 0
                else { return !run.isRunning }
                if samples.last != done { samples.append(done) }
                if copying == nil { copying = (try? backupVM(config, ["status"]))?.out }
                return samples.count >= 4
            }
        }
        #expect(run.wait(timeout: 300))
        #expect(run.process.terminationStatus == 0, "\(run.standardOutput)")
        #expect(samples.count >= 2 && samples == samples.sorted(), "bytes increase while copying: \(samples)")
        let text = try #require(copying)
        #expect(text.contains("RUNNING 1\n") && text.contains(" copy ") && text.contains(" vda "), "\(text)")
        let pty = run.standardOutput
        #expect(pty.contains("\r\u{1B}[K\(vm) kvm1 copy vda"), "a progress line on the terminal: \(pty.suffix(2000))")
        #expect(pty.contains("backup of \(vm) done"))

        // After: nothing running, the VM's last job done and not stale; the notifier saw the backup.
        let after = try status(config)
        #expect(after.running.isEmpty)
        let op = try #require(after.vms.first { $0.history.vm == vm })
        #expect(op.history.lastJob?.status == .done && !op.history.stale && op.history.newestBackup != nil)
        let newest = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm))
        let env = notifierEnvironment(envFile)
        #expect(env["BACKUP_VM_STATUS"] == "done" && env["BACKUP_VM_VM"] == vm && env["BACKUP_VM_HOST"] == "kvm1")
        #expect(env["BACKUP_VM_BACKUP_ID"] == newest.id, "\(env)")
        #expect((Double(env["BACKUP_VM_DOWNTIME"] ?? "") ?? 0) > 0, "a cold backup stops the VM: \(env)")
        #expect((Int64(env["BACKUP_VM_BYTES"] ?? "") ?? 0) > 0)
        let ok = try PrometheusText.parse(metrics)
        #expect(ok.value("backup_vm_consecutive_failures", ["vm": vm]) == 0)
        #expect(ok.value("backup_vm_stale", ["vm": vm]) == 0)
        #expect((ok.value("backup_vm_last_bytes", ["vm": vm]) ?? 0) > 0)
        #expect((ok.value("backup_vm_last_downtime_seconds", ["vm": vm]) ?? 0) > 0)
        #expect(ok.value("backup_vm_stale", ["vm": "ghost1"]) == 1, "never backed up: stale")
        #expect(try sha256(ofFile: disks["vda"]!.path) == disks["vda"]!.sha256, "the guest's disk untouched")

        // Without a terminal: plain log lines, no carriage return or escape.
        let plain = try backupVM(config, [vm])
        #expect(plain.status == 0, "\(plain.err)")
        #expect(!plain.err.contains("\r") && !plain.err.contains("\u{1B}["), "\(plain.err)")

        try coverage(lab, config: config)
        try failureAndHangingNotifier(lab, config: config, metrics: metrics)
    }

    /// doctor asks the hypervisors which domains exist: a defined guest without a schedule line is a
    /// warning, a schedule line without a guest a failure; status shows what doctor found.
    func coverage(_ lab: Lab, config: String) throws {
        let stray = "op2"
        lab.removeGuest(stray)
        defer { lab.removeGuest(stray) }
        try lab.makeGuest("kvm1", stray, raw: 8, start: false)
        let doctor = try backupVM(config, ["doctor"])
        #expect(doctor.status == 1, "ghost1 exists nowhere: \(doctor.out)")
        #expect(
            doctor.out.contains("WARN coverage: \(stray) (on kvm1) has no line in sheduler.conf: nobody backs it up"),
            "\(doctor.out)")
        #expect(doctor.out.contains("FAIL coverage: sheduler.conf schedules ghost1, which is defined on no hypervisor"))
        #expect(!doctor.out.contains("coverage: op1"), "op1 is scheduled and defined")
        let status = try backupVM(config, ["status"]).out
        #expect(status.contains("UNSCHEDULED \(stray) on kvm1: no line in sheduler.conf"), "\(status)")
        #expect(status.contains("MISSING ghost1: scheduled, defined on no hypervisor"))
        let ghost = status.split(separator: "\n").first { $0.hasPrefix("  ghost1 ") }.map(String.init) ?? ""
        #expect(ghost.contains(" STALE "), "never backed up: STALE in the VMs table: \(status)")
        let op = status.split(separator: "\n").first { $0.hasPrefix("  op1 ") }.map(String.init) ?? ""
        #expect(op.contains(" ok ") && op.contains("done "), "\(status)")
    }

    /// A VM that exists on no hypervisor fails at once: the metrics count it, and a notifier that
    /// hangs (with a child) is killed after NotifyTimeout without changing the job's exit status.
    func failureAndHangingNotifier(_ lab: Lab, config: String, metrics: String) throws {
        let pids = tmp.path + "/hang.pids"
        tmp.write(
            "hang.sh", "#!/bin/sh\necho $$ >> '\(pids)'\nsleep 300 & echo $! >> '\(pids)'\nwait\n")
        chmod(tmp.path + "/hang.sh", 0o755)
        var conf = try String(contentsOfFile: config + "/backup_vm.d/backup_vm.conf", encoding: .utf8)
        conf = conf.replacingOccurrences(
            of: "NotifyCommand=\(tmp.path)/notify.sh", with: "NotifyCommand=\(tmp.path)/hang.sh\nNotifyTimeout=2")
        tmp.write("backup_vm.d/backup_vm.conf", conf)
        let started = Date()
        let failed = try backupVM(config, ["ghost1"])
        let took = Date().timeIntervalSince(started)
        #expect(failed.status == 1, "\(failed.err)")
        #expect(failed.err.contains("notifier killed after NotifyTimeout (2 s)"), "\(failed.err)")
        #expect(took < 120, "the hanging notifier did not hold the run: \(took) s")
        let hung = ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            Int32($0)
        }
        #expect(hung.count == 2, "the notifier and its child started: \(hung)")
        for pid in hung {
            #expect(eventually(timeout: 5) { !ProcessState.isRunning(pid) }, "notifier process \(pid) is gone")
        }
        let bad = try PrometheusText.parse(metrics)
        #expect(bad.value("backup_vm_consecutive_failures", ["vm": "ghost1"]) == 1)
        #expect(bad.value("backup_vm_stale", ["vm": "ghost1"]) == 1)
        #expect(bad.value("backup_vm_consecutive_failures", ["vm": "op1"]) == 0)
    }
}
