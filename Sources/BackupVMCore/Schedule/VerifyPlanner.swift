import Foundation

/// When the cron tick queues a verify job (VerifyEveryDays in the VM's profile): inside the backup
/// window, when the VM's backup is not due, no job of it is queued or running, no restore test of it is
/// queued by this tick, and one of its backups was not verified within that many days
/// (ScheduledVerify.isDue). Like restore tests, a verify never counts as a backup or its failure.
extension Enqueuer {
    public func verifyDecisions(now: Date, backups: [DueDecision], tests: [DueDecision], open: Set<String>)
        -> [DueDecision]
    {
        let inWindow = planner.windowOccurrence(containing: now, hours: configuration.main.backupHours) != nil
        let busy = Set(backups.filter(\.due).map(\.vm)).union(tests.filter(\.due).map(\.vm))
        let scheduled = ScheduledVerify(configuration: configuration, logger: logger)
        return configuration.schedule.entries.compactMap { entry in
            let days = configuration.profile(for: entry.vm).verifyEveryDays
            guard days > 0 else { return nil }
            func decision(_ due: Bool, _ reason: String) -> DueDecision {
                DueDecision(vm: entry.vm, due: due, reason: "verify: " + reason)
            }
            guard inWindow else { return decision(false, "outside BackupHours") }
            guard !busy.contains(entry.vm) else { return decision(false, "its backup or restore test goes first") }
            guard !open.contains(entry.vm) else { return decision(false, "a job for it is queued or running") }
            let due = scheduled.due(entry.vm, now: now)
            guard !due.isEmpty else { return decision(false, "every backup verified within \(days) days") }
            return decision(true, "\(due.count) backups not verified within \(days) days")
        }
    }
}
