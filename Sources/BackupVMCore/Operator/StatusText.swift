import Foundation

/// `backup_vm status` for people: running jobs with phase, bytes, rate and ETA; the queue; each
/// scheduled VM's last result, newest good backup and whether it is STALE or due; held slots.
public enum StatusText {
    public static func render(_ r: StatusReport) -> String {
        var out = ""
        out += "RUNNING \(r.running.count)\n"
        if !r.running.isEmpty {
            out += table(
                ["VM", "HOST", "PHASE", "ON", "DONE", "OF", "RATE", "ETA", "ELAPSED"],
                r.running.map { running(r, $0) })
        }
        out += "QUEUED \(r.queued.count)\n"
        if !r.queued.isEmpty {
            out += table(
                ["VM", "QUEUED", "BY", "JOB"],
                r.queued.map { q in
                    [
                        q.vm ?? "?", HumanUnits.duration(r.generated.timeIntervalSince(q.queued)) + " ago",
                        q.requestedBy ?? "-", q.job,
                    ]
                })
        }
        let stale = r.vms.filter { $0.history.stale }.count
        out += "VMS \(r.vms.count) (\(stale) stale: no good backup within \(r.staleAfterHours)h)\n"
        if !r.vms.isEmpty {
            out += table(["VM", "STATE", "LAST JOB", "NEWEST BACKUP", "AGE", "SIZE", "NEXT"], r.vms.map { vm(r, $0) })
        }
        out += coverage(r)
        out += "HELD SLOTS \(r.heldSlots.count)\n"
        for slot in r.heldSlots { out += "  \(slot.slot)  \(slot.holder)\n" }
        return out
    }

    /// From the last doctor run: the VMs nobody backs up, and lines for VMs that exist nowhere.
    static func coverage(_ r: StatusReport) -> String {
        guard let c = r.coverage else { return "COVERAGE unknown (run backup_vm doctor)\n" }
        let age = HumanUnits.duration(r.generated.timeIntervalSince(c.checked))
        var out = "COVERAGE as of doctor \(age) ago: \(c.unscheduled.count) unscheduled, \(c.missing.count) missing\n"
        for vm in c.unscheduled {
            out += "  UNSCHEDULED \(vm) on \(c.hosts(of: vm).joined(separator: ", ")): no line in sheduler.conf\n"
        }
        for vm in c.missing { out += "  MISSING \(vm): scheduled, defined on no hypervisor\n" }
        if !c.unreachable.isEmpty { out += "  (not asked: \(c.unreachable.joined(separator: ", ")))\n" }
        return out
    }

    static func running(_ r: StatusReport, _ job: StatusReport.RunningJob) -> [String] {
        guard let p = job.progress else { return [job.vm ?? "?", "-", "starting", "-", "-", "-", "-", "-", "-"] }
        let done = p.bytesDone.map(HumanUnits.size) ?? "-"
        let total = p.bytesTotal.map { "~" + HumanUnits.size($0) } ?? "-"
        return [
            p.vm, p.host ?? "-", p.phase.rawValue, p.detail ?? "-", done, total,
            p.bytesPerSecond.map(HumanUnits.rate) ?? "-", p.etaSeconds.map(HumanUnits.duration) ?? "-",
            HumanUnits.duration(r.generated.timeIntervalSince(p.started)),
        ]
    }

    static func vm(_ r: StatusReport, _ v: StatusReport.VMStatus) -> [String] {
        let h = v.history
        var state = h.stale ? "STALE" : "ok"
        if h.consecutiveFailures > 0 { state += " \(h.consecutiveFailures) failed" }
        let last =
            h.lastJob.map { job in
                "\(job.status.rawValue) \(HumanUnits.duration(r.generated.timeIntervalSince(job.finished))) ago"
                    + (job.status == .failed ? ": \(job.reason.map { String($0.prefix(60)) } ?? "")" : "")
            } ?? "never ran"
        let newest = h.newestBackup
        return [
            h.vm, state, last, newest?.id ?? "none",
            h.newestBackupAgeHours.map { HumanUnits.duration($0 * 3600) } ?? "-",
            newest.map { HumanUnits.size($0.storedBytes) } ?? "-",
            v.due
                ? "due now"
                : "not due (\(v.dueReason))" + (v.nextWindow.map { "; next window \(Timestamps.iso($0))" } ?? ""),
        ]
    }

    /// Columns padded to their widest cell, the last one left as it is.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            "  "
                + row.enumerated().map { i, cell in
                    i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
