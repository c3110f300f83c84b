import Foundation
import Testing

@testable import BackupVMCore

/// What tells the operator about each job without being asked: the notifier (NotifyCommand, with the
/// result in BACKUP_VM_* variables) and the Prometheus metrics file (MetricsFile), on the real
/// JobRunner and spool with a scripted hypervisor. The metrics are read back with a real parser
/// (Debian's python3-prometheus-client).
@Suite("operator: notifier and metrics", .tags(.unit))
struct OperatorNoticeTests {
    let dir = TempDir("notice")

    /// A harness whose notifier writes its BACKUP_VM_* environment to a file.
    func harness(notifyOn: String = "always", command: String? = nil, timeout: Int = 10) throws -> (
        PipelineHarness, envFile: String, metrics: String
    ) {
        let envFile = dir.path + "/env"
        let metrics = dir.path + "/backup_vm.prom"
        let notify = command ?? "env | grep '^BACKUP_VM_' | sort > '\(envFile)'"
        let h = try PipelineHarness(
            ScriptedVMs.lvm(), mode: .hot,
            main: """
                NotifyCommand="\(notify)"
                NotifyOn=\(notifyOn)
                NotifyTimeout=\(timeout)
                MetricsFile=\(metrics)
                """)
        return (h, envFile, metrics)
    }

    @Test func aSuccessTellsTheBackupItMade() throws {
        let (h, envFile, _) = try harness()
        let run = try h.backup()
        guard case .succeeded(let report) = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        let env = notifierEnvironment(envFile)
        #expect(env["BACKUP_VM_STATUS"] == "done", "\(env)")
        #expect(env["BACKUP_VM_VM"] == h.vm)
        #expect(env["BACKUP_VM_HOST"] == "kvm1")
        #expect(env["BACKUP_VM_BACKUP_ID"] == report.backupID)
        #expect(env["BACKUP_VM_BYTES"] == String(report.bytes))
        #expect(env["BACKUP_VM_REASON"] == "")
        #expect(env["BACKUP_VM_KIND"] == "backup")
        #expect(
            Double(env["BACKUP_VM_DURATION"] ?? "") != nil && Double(env["BACKUP_VM_DOWNTIME"] ?? "") != nil, "\(env)")
    }

    @Test func aFailureTellsItsReasonAndOnlyFailuresAreToldByDefault() throws {
        let (h, envFile, _) = try harness(notifyOn: "failure")
        try h.backup()
        #expect(!FileManager.default.fileExists(atPath: envFile), "NotifyOn=failure: a success is not told")
        h.hypervisor.failAlways(.save)
        let run = try h.backup()
        guard case .failed(let reason) = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        let env = notifierEnvironment(envFile)
        #expect(env["BACKUP_VM_STATUS"] == "failed", "\(env)")
        #expect(env["BACKUP_VM_REASON"] == JobFile.oneLine(reason))
        #expect(env["BACKUP_VM_BACKUP_ID"] == "")
    }

    /// Issue #19 item 12: reasons were not capped. A failure that says megabytes (a helper's failure
    /// frame, a last stderr line, a guest's console) made a job record over the spool's size limit: it
    /// could not be read back, so the notifier was skipped and failures in a row were not counted. Now
    /// every reason is one line of at most 500 bytes without control characters; the record parses.
    @Test func aHugeReasonIsCappedAndTheRecordStillParses() throws {
        let (h, envFile, _) = try harness(notifyOn: "failure")
        let line = "\u{1B}[31mERROR\u{1B}[0m \u{7}bell\u{0} nul\r\ncarriage\u{2028}separator "
        h.hypervisor.failureText = String(repeating: line, count: 2_000_000 / line.utf8.count)
        h.hypervisor.failAlways(.save)
        let run = try h.backup()
        guard case .failed = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        let reason = try #require(run.result["reason"], "the record in failed/ parses")
        #expect(reason.utf8.count <= ReasonText.limit, "\(reason.utf8.count) bytes")
        #expect(reason.unicodeScalars.allSatisfy { $0.value >= 32 && $0.value != 127 && $0 != "\u{2028}" })
        #expect(reason.contains("ERROR") && reason.hasSuffix("[...]"), "\(reason)")
        let env = notifierEnvironment(envFile)
        #expect(env["BACKUP_VM_STATUS"] == "failed" && env["BACKUP_VM_REASON"] == reason, "the notifier ran: \(env)")
        _ = try? h.backup()
        let history = FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0]
        #expect(history.consecutiveFailures == 2, "failures in a row are counted: \(history)")
    }

    @Test func aHangingNotifierIsKilledWithItsChildrenAndTheJobStands() throws {
        let pids = dir.path + "/pids"
        // A child in the background and one in the foreground, both hanging; the shell itself waits.
        dir.write(
            "hang.sh",
            """
            #!/bin/sh
            sleep 300 & echo $! >> '\(pids)'
            sh -c 'echo $$ >> \(pids); exec sleep 301'
            """)
        chmod(dir.path + "/hang.sh", 0o755)
        let (h, _, _) = try harness(command: dir.path + "/hang.sh", timeout: 1)
        let started = Date()
        let run = try h.backup()
        let took = Date().timeIntervalSince(started)
        guard case .succeeded = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        #expect(took < 30, "the runner returned after the notifier's timeout, not its sleep: \(took) s")
        #expect(h.messages.contains("notifier killed after NotifyTimeout (1 s)"), "\(h.messages.all)")
        let children = ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(children.count == 2, "both children started: \(children)")
        for pid in children.compactMap({ Int32($0) }) {
            #expect(
                eventually(timeout: 5) { !ProcessState.isRunning(pid) },
                "child \(pid) of the notifier is gone (or a zombie): \(ProcessState.state(pid) ?? "-")")
        }
        #expect(h.store.catalog.backups(of: h.vm).count == 1, "the backup stands")
    }

    @Test func aFailingNotifierIsLoggedAndChangesNothing() throws {
        let (h, _, _) = try harness(command: "echo 'mail server down' >&2; exit 3")
        let run = try h.backup()
        guard case .succeeded = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        #expect(h.messages.contains("notifier exited with status 3; it said: mail server down"), "\(h.messages.all)")
    }

    @Test func aNotifierThatPrintsALotIsReadButOnlyItsStartKept() throws {
        let (h, _, _) = try harness(command: "head -c 50000000 /dev/zero | tr '\\\\0' x; echo; exit 2")
        let run = try h.backup()
        guard case .succeeded = run.outcome else { throw HarnessError(description: "\(run.outcome)") }
        let line = h.messages.all.first { $0.contains("notifier exited with status 2") } ?? ""
        #expect(line.contains(String(repeating: "x", count: 4000)), "it printed: \(line.prefix(300))")
        #expect(line.count < 5000, "\(line.count) characters")
    }

    @Test func runningJobsAreCountedPerHostExactly() {
        let held = ["global.0", "global.1", "host.kvm1.0", "host.kvm1.dc2.0", "host.kvm1.dc2.1", "vm.web01"]
        #expect(MetricsFile.runningJobs(held: held, hosts: ["kvm1", "kvm1.dc2"]) == ["kvm1": 1, "kvm1.dc2": 2])
    }

    @Test func theMetricsFileParsesAfterASuccessAndAFailure() throws {
        let (h, _, metrics) = try harness()
        try h.backup()
        let first = try PrometheusText.parse(metrics)
        let vm = ["vm": h.vm]
        #expect(first.value("backup_vm_consecutive_failures", vm) == 0)
        #expect(first.value("backup_vm_stale", vm) == 0)
        #expect((first.value("backup_vm_last_success_timestamp_seconds", vm) ?? 0) > Date().timeIntervalSince1970 - 600)
        #expect((first.value("backup_vm_last_bytes", vm) ?? 0) > 0)
        #expect(first.value("backup_vm_running_jobs", ["host": "kvm1"]) == 0)
        #expect(first.value("backup_vm_spool_jobs", ["state": "queued"]) == 0)
        h.hypervisor.failAlways(.save)
        try h.backup()
        try h.backup()
        let second = try PrometheusText.parse(metrics)
        #expect(second.value("backup_vm_consecutive_failures", vm) == 2)
        #expect(second.value("backup_vm_stale", vm) == 0, "the good backup is still young")
        #expect(
            second.value("backup_vm_last_success_timestamp_seconds", vm)
                == first.value("backup_vm_last_success_timestamp_seconds", vm))
    }

    @Test func aVMWithoutABackupIsStaleAndLabelsAreEscaped() throws {
        let history = VMHistory(
            vm: "we\"ird\\vm", lastJob: nil, lastSuccess: nil, consecutiveFailures: 4, newestBackup: nil, stale: true,
            newestBackupAgeHours: nil)
        let text = MetricsFile.render(
            .init(histories: [history], runningByHost: ["kvm1": 2], queued: 3, active: 1, generated: Date()))
        dir.write("m.prom", text)
        let parsed = try PrometheusText.parse(dir.path + "/m.prom")
        #expect(parsed.value("backup_vm_stale", ["vm": "we\"ird\\vm"]) == 1, "\(text)")
        #expect(parsed.value("backup_vm_consecutive_failures", ["vm": "we\"ird\\vm"]) == 4)
        #expect(parsed.value("backup_vm_running_jobs", ["host": "kvm1"]) == 2)
        #expect(parsed.value("backup_vm_spool_jobs", ["state": "running"]) == 1)
    }

    @Test func notifySettingsAreChecked() {
        var f = ConfigFixture("notify")
        f.main += "\nNotifyOn=always\nMetricsFile=relative.prom\n"
        f.profiles["web01"] = "RestoreTestSeconds=600"
        let text = f.diagnostics().map(\.description).joined(separator: "\n")
        #expect(text.contains("NotifyOn='always': set without NotifyCommand"), "\(text)")
        #expect(text.contains("MetricsFile='relative.prom': expected an absolute path"), "\(text)")
        #expect(text.contains("RestoreTestSeconds (600) must be less than RestoreTestTimeout (300)"), "\(text)")
    }

    /// The shipped example notifier, with a stand-in sendmail on PATH: the mail names the VM and the
    /// reason, and a reason that looks like shell code stays text.
    @Test func theExampleMailNotifierSendsTheResultAsText() throws {
        dir.write("bin/sendmail", "#!/bin/sh\ncat > '\(dir.path)/mail'\n")
        chmod(dir.path + "/bin/sendmail", 0o755)
        let script = Paths.packageRoot + "/backup_vm.d/notify-mail"
        let hostile = "disk full $(touch \(dir.path)/pwned) `touch \(dir.path)/pwned2`"
        let r = try runTool(
            "/usr/bin/env",
            [
                "PATH=\(dir.path)/bin:/usr/bin:/bin", "BACKUP_VM_VM=web01", "BACKUP_VM_STATUS=failed",
                "BACKUP_VM_HOST=kvm1", "BACKUP_VM_REASON=\(hostile)", script, "ops@example.org",
            ])
        #expect(r.status == 0, "\(r.err)")
        let mail = (try? String(contentsOfFile: dir.path + "/mail", encoding: .utf8)) ?? ""
        #expect(mail.hasPrefix("To: ops@example.org\nSubject: backup_vm: FAILED web01 on kvm1\n"), "\(mail)")
        #expect(mail.contains("Reason:    \(hostile)\n"), "\(mail)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/pwned"))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/pwned2"))
        let refused = try runTool(script, ["root\nBcc: x@y"])
        #expect(refused.status == 64, "a recipient with a header in it is refused")
    }
}
