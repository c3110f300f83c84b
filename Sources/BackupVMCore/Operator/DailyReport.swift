import Foundation

/// `backup_vm report`: the summary for cron mail. The jobs that finished in the last `hours` (each
/// VM's results, bytes, time), the VMs that are STALE or failing, and what the doctor last found
/// about coverage. `--json` prints the same (README "Being told").
public struct DailyReport: Codable, Sendable {
    public var generated: Date
    public var hours: Int
    /// Backup jobs of the period.
    public var jobsDone: Int
    public var jobsFailed: Int
    /// Restore-test jobs of the period.
    public var testsPassed: Int = 0
    public var testsFailed: Int = 0
    /// Verify jobs of the period (VerifyEveryDays): all backups checked were good, or one was damaged.
    public var verifiesPassed: Int = 0
    public var verifiesFailed: Int = 0
    public var bytesStored: Int64
    /// Finished in the period, oldest first.
    public var jobs: [JobSummary]
    /// Every scheduled VM.
    public var vms: [VMHistory]
    public var coverage: Coverage?

    public var healthy: Bool {
        jobsFailed == 0 && testsFailed == 0 && verifiesFailed == 0
            && !vms.contains { $0.stale || $0.consecutiveFailures > 0 }
            && (coverage.map { $0.unscheduled.isEmpty && $0.missing.isEmpty } ?? true)
    }

    public static func gather(configuration: Configuration, hours: Int, now: Date = Date()) -> DailyReport {
        let history = FleetHistory(configuration: configuration)
        let since = now.addingTimeInterval(-Double(hours) * 3600)
        let jobs = history.finishedJobs().filter { $0.finished > since && $0.finished <= now }
        let backups = jobs.filter { $0.kind == .backup }
        let tests = jobs.filter { $0.kind == .restoreTest }
        let verifies = jobs.filter { $0.kind == .verify }
        let done = backups.filter { $0.status == .done }
        var report = DailyReport(
            generated: now, hours: hours, jobsDone: done.count, jobsFailed: backups.count - done.count,
            testsPassed: tests.filter { $0.status == .done }.count,
            testsFailed: tests.filter { $0.status == .failed }.count,
            bytesStored: done.reduce(0) { $0 + ($1.bytes ?? 0) }, jobs: jobs,
            vms: history.histories(of: configuration.schedule.entries.map(\.vm), now: now),
            coverage: Coverage.read(spool: SpoolLayout(root: configuration.main.spoolDir)))
        report.verifiesPassed = verifies.filter { $0.status == .done }.count
        report.verifiesFailed = verifies.filter { $0.status == .failed }.count
        return report
    }

    public func text() -> String {
        var out = "backup_vm report, last \(hours) h, \(Timestamps.iso(generated))\n"
        out += healthy ? "All well.\n" : "NEEDS ATTENTION.\n"
        out += "\(jobsDone) backups done (\(HumanUnits.size(bytesStored)) stored), \(jobsFailed) failed.\n"
        if testsPassed + testsFailed > 0 {
            out += "\(testsPassed) restore tests booted, \(testsFailed) failed.\n"
        }
        if verifiesPassed + verifiesFailed > 0 {
            out += "\(verifiesPassed) scheduled verifications found no damage, \(verifiesFailed) found damage.\n"
        }
        let attention = vms.filter { $0.stale || $0.consecutiveFailures > 0 }
        if !attention.isEmpty {
            out += "\nVMs needing attention:\n"
            for h in attention {
                var why: [String] = []
                if h.stale {
                    why.append(
                        h.newestBackupAgeHours.map { "STALE: newest good backup \(HumanUnits.duration($0 * 3600)) old" }
                            ?? "STALE: no backup at all")
                }
                if h.consecutiveFailures > 0 {
                    why.append("\(h.consecutiveFailures) failed in a row, last: \(h.lastJob?.reason ?? "?")")
                }
                out += "  \(h.vm): \(why.joined(separator: "; "))\n"
            }
        }
        if let c = coverage, !c.unscheduled.isEmpty || !c.missing.isEmpty {
            out += "\nCoverage (doctor, \(Timestamps.iso(c.checked))):\n"
            for vm in c.unscheduled {
                out += "  \(vm): defined on \(c.hosts(of: vm).joined(separator: ", ")), not scheduled\n"
            }
            for vm in c.missing { out += "  \(vm): scheduled, defined on no hypervisor\n" }
        }
        if !jobs.isEmpty {
            out += "\nJobs:\n"
            out += StatusText.table(
                ["FINISHED", "VM", "RESULT", "HOST", "SIZE", "TIME", "REASON"],
                jobs.map { j in
                    [
                        Timestamps.iso(j.finished), j.vm,
                        (j.kind == .backup ? "" : j.kind.rawValue + " ") + j.status.rawValue, j.host ?? "-",
                        j.bytes.map(HumanUnits.size) ?? "-", j.durationSeconds.map(HumanUnits.duration) ?? "-",
                        j.reason.map { String($0.prefix(100)) } ?? "",
                    ]
                })
        }
        return out
    }

    public func json() -> String {
        let encoder = OperatorJSON.encoder(pretty: true)
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}
