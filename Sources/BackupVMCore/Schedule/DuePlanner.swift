import Foundation

/// Why a VM is or is not enqueued by this tick; the tick logs these, `--dry-run` prints them.
public struct DueDecision: Sendable, Equatable, CustomStringConvertible {
    public let vm: String
    public let due: Bool
    public let reason: String
    /// Something the operator must hear of whatever the decision (the tick logs it as a warning).
    public var warning: String? = nil

    public var description: String { "\(vm): \(due ? "due" : "not due") (\(reason))" }
}

/// Decides which VMs are due. Pure: the clock and the time zone are parameters, so windows across
/// midnight, weekday boundaries and DST days are tested without waiting for them.
///
/// The window's day: a window that crosses midnight belongs to the day on which it opened. With
/// BackupHours=22-04, 01:00 on Tuesday is inside Monday's window, so a VM scheduled for Monday is
/// due then and one scheduled only for Tuesday is not (its window opens Tuesday 22:00).
/// "Already backed up" means a good backup that started inside the current window occurrence.
public struct DuePlanner: Sendable {
    public var calendar: Calendar

    public init(timeZone: TimeZone = .current) {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = timeZone
        calendar = cal
    }

    /// The start of the window occurrence that contains `now`, and its ISO weekday; nil outside.
    public func windowOccurrence(containing now: Date, hours: HoursWindow) -> (start: Date, isoWeekday: Int)? {
        let c = calendar.dateComponents([.hour, .minute], from: now)
        let minute = c.hour! * 60 + c.minute!
        guard hours.contains(minuteOfDay: minute) else { return nil }
        var day = calendar.startOfDay(for: now)
        if hours.crossesMidnight && minute < hours.endMinute {
            day = calendar.date(byAdding: .day, value: -1, to: day)!
            day = calendar.startOfDay(for: day)
        }
        // On a DST day the opening wall-clock time may not exist (02:30 when clocks jump 02->03):
        // Calendar then moves forward to the next valid instant, which is what an operator expects.
        let start =
            calendar.date(
                bySettingHour: hours.startMinute / 60, minute: hours.startMinute % 60,
                second: 0, of: day, matchingPolicy: .nextTime) ?? day
        let weekday = calendar.component(.weekday, from: day)  // 1 = Sunday
        return (start, (weekday + 5) % 7 + 1)
    }

    /// When the next window on one of `weekdays` opens after `now` (within 8 days; nil: none, an
    /// empty set of days). `status` shows it as what is due next.
    public func nextWindow(after now: Date, hours: HoursWindow, weekdays: Weekdays) -> Date? {
        var day = calendar.startOfDay(for: now)
        for _ in 0..<9 {
            let start =
                calendar.date(
                    bySettingHour: hours.startMinute / 60, minute: hours.startMinute % 60, second: 0, of: day,
                    matchingPolicy: .nextTime) ?? day
            let weekday = (calendar.component(.weekday, from: day) + 5) % 7 + 1
            if start > now && weekdays.contains(isoWeekday: weekday) { return start }
            guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = calendar.startOfDay(for: next)
        }
        return nil
    }

    public struct VMState: Sendable {
        /// When the newest good backup started (its ID): the newest by commit order, which after the
        /// clock was set back is not the one with the latest ID.
        public var newestGoodBackup: Date?
        /// That backup's ID, for the warning about a backup dated in the future.
        public var newestBackupID: String?
        public var hasOpenJob: Bool
        public var lastFailure: Date?

        public init(
            newestGoodBackup: Date? = nil, newestBackupID: String? = nil, hasOpenJob: Bool = false,
            lastFailure: Date? = nil
        ) {
            self.newestGoodBackup = newestGoodBackup
            self.newestBackupID = newestBackupID
            self.hasOpenJob = hasOpenJob
            self.lastFailure = lastFailure
        }
    }

    public func decide(
        _ entry: ScheduleEntry, now: Date, hours: HoursWindow, state: VMState,
        retryFailedAfter: TimeInterval
    ) -> DueDecision {
        guard let window = windowOccurrence(containing: now, hours: hours) else {
            return DueDecision(vm: entry.vm, due: false, reason: "outside BackupHours \(hours)")
        }
        guard entry.weekdays.contains(isoWeekday: window.isoWeekday) else {
            return DueDecision(
                vm: entry.vm, due: false,
                reason:
                    "window of \(Weekdays.names[window.isoWeekday - 1].capitalized) not in its days \(entry.weekdays)")
        }
        guard let newest = state.newestGoodBackup, newest > now else {
            return decideInWindow(
                entry, opened: window.start, now: now, state: state, retryFailedAfter: retryFailedAfter)
        }
        // Dated after now: the clock was set back since that backup. It was made at some unknown
        // earlier time, so it cannot show that this window has its backup; counting it would skip the
        // VM until the clock caught up (days, perhaps). The backup made now is newer by commit order
        // and decides the next ticks, so this happens once per window, not at every tick.
        var unknown = state
        unknown.newestGoodBackup = nil
        let decision = decideInWindow(
            entry, opened: window.start, now: now, state: unknown, retryFailedAfter: retryFailedAfter)
        let id = state.newestBackupID ?? Timestamps.compact(newest)
        let reason = decision.due ? "scheduled; its newest backup \(id) is dated in the future" : decision.reason
        return DueDecision(
            vm: entry.vm, due: decision.due, reason: reason,
            warning: "\(entry.vm): its newest backup \(id) is dated \(Timestamps.iso(newest)), after now"
                + " (\(Timestamps.iso(now))): the clock was set back since. It does not count as this window's"
                + " backup; check this server's clock (NTP)")
    }

    /// The rules that apply once `now` is inside a window (opened at `opened`) on one of the VM's days.
    func decideInWindow(
        _ entry: ScheduleEntry, opened: Date, now: Date, state: VMState, retryFailedAfter: TimeInterval
    ) -> DueDecision {
        if let newest = state.newestGoodBackup, newest >= opened {
            return DueDecision(vm: entry.vm, due: false, reason: "backed up in this window (\(Timestamps.iso(newest)))")
        }
        if state.hasOpenJob {
            return DueDecision(vm: entry.vm, due: false, reason: "a job for it is queued or running")
        }
        // A failure dated after now (the clock was set back) would hold the retry off until the clock
        // caught up; it counts as long ago instead.
        if let failed = state.lastFailure, failed >= opened, failed <= now,
            now.timeIntervalSince(failed) < retryFailedAfter
        {
            return DueDecision(
                vm: entry.vm, due: false,
                reason: "failed at \(Timestamps.iso(failed)); retried \(Int(retryFailedAfter / 60)) min after a failure"
            )
        }
        return DueDecision(vm: entry.vm, due: true, reason: "scheduled, no backup yet in this window")
    }
}
