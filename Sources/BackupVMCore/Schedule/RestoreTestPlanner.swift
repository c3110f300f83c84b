import Foundation

/// When the cron tick queues a restore test (RestoreTestEveryDays in the VM's profile): inside the
/// backup window, the VM has a backup, no job of it is queued or running, its backup is not due now
/// (the backup goes first, the next tick tests it), and the last restore test recorded in any of its
/// backups' verify records (passed or failed: a failure was told, and retrying at once rarely helps)
/// is older than that many days.
extension Enqueuer {
    public func restoreTestDecisions(now: Date, backups: [DueDecision], open: Set<String>) -> [DueDecision] {
        let store = BackupStore(storage: configuration.main.backupStorage)
        let inWindow = planner.windowOccurrence(containing: now, hours: configuration.main.backupHours) != nil
        let backupDue = Set(backups.filter(\.due).map(\.vm))
        return configuration.schedule.entries.compactMap { entry in
            let days = configuration.profile(for: entry.vm).restoreTestEveryDays
            guard days > 0 else { return nil }
            func decision(_ due: Bool, _ reason: String) -> DueDecision {
                DueDecision(vm: entry.vm, due: due, reason: "restore test: " + reason)
            }
            guard inWindow else { return decision(false, "outside BackupHours") }
            guard !backupDue.contains(entry.vm) else { return decision(false, "its backup goes first") }
            guard !open.contains(entry.vm) else { return decision(false, "a job for it is queued or running") }
            let backups = store.catalog.backups(of: entry.vm)
            guard !backups.isEmpty else { return decision(false, "no backup to test") }
            let last = backups.compactMap { BackupVerifier.lastRecord($0)?.restoreTest?.tested }
                .compactMap(Timestamps.parseISO).max()
            if let last, now.timeIntervalSince(last) < Double(days) * 86400, last <= now {
                return decision(false, "tested \(Timestamps.iso(last)), every \(days) days")
            }
            return decision(true, last.map { "last tested \(Timestamps.iso($0))" } ?? "never tested")
        }
    }
}
