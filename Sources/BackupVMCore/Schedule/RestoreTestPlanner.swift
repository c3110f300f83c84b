import Foundation

/// When the cron tick queues a restore test (RestoreTestEveryDays in the VM's profile): inside the
/// backup window, the VM has a backup, no job of it is queued or running, its backup is not due now
/// and its last backup job did not fail (the backup goes first: a failed one waits for its retry),
/// and the last restore test recorded in any of its backups' verify records (passed or failed: a
/// failure was told, and retrying at once rarely helps; one dated after now, the clock set back, is
/// left out) is older than that many days.
extension Enqueuer {
    public func restoreTestDecisions(now: Date, backups: [DueDecision], open: Set<String>) -> [DueDecision] {
        let store = BackupStore(storage: configuration.main.backupStorage)
        let inWindow = planner.windowOccurrence(containing: now, hours: configuration.main.backupHours) != nil
        let backupDue = Set(backups.filter(\.due).map(\.vm))
        let failing = Set(
            FleetHistory(spool: spool, catalog: store.catalog, staleAfterHours: configuration.main.staleAfterHours)
                .histories(of: configuration.schedule.entries.map(\.vm), now: now)
                .filter { $0.consecutiveFailures > 0 }.map(\.vm))
        return configuration.schedule.entries.compactMap { entry in
            let days = configuration.profile(for: entry.vm).restoreTestEveryDays
            guard days > 0 else { return nil }
            func decision(_ due: Bool, _ reason: String) -> DueDecision {
                DueDecision(vm: entry.vm, due: due, reason: "restore test: " + reason)
            }
            guard inWindow else { return decision(false, "outside BackupHours") }
            guard !backupDue.contains(entry.vm) else { return decision(false, "its backup goes first") }
            guard !failing.contains(entry.vm) else { return decision(false, "its last backup failed; that goes first") }
            guard !open.contains(entry.vm) else { return decision(false, "a job for it is queued or running") }
            let backups = store.catalog.backups(of: entry.vm)
            guard !backups.isEmpty else { return decision(false, "no backup to test") }
            let last = backups.compactMap { BackupVerifier.lastRecord($0)?.restoreTest?.tested }
                .compactMap(Timestamps.parseISO).filter { $0 <= now }.max()
            if let last, now.timeIntervalSince(last) < Double(days) * 86400 {
                return decision(false, "tested \(Timestamps.iso(last)), every \(days) days")
            }
            return decision(true, last.map { "last tested \(Timestamps.iso($0))" } ?? "never tested")
        }
    }
}
