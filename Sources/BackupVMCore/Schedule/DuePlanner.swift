import Foundation

/// Why a VM is or is not enqueued by this tick; the tick logs these, `--dry-run` prints them.
public struct DueDecision: Sendable, Equatable, CustomStringConvertible {
    public let vm: String
    public let due: Bool
    public let reason: String

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

    public struct VMState: Sendable {
        public var newestGoodBackup: Date?
        public var hasOpenJob: Bool
        public var lastFailure: Date?

        public init(newestGoodBackup: Date? = nil, hasOpenJob: Bool = false, lastFailure: Date? = nil) {
            self.newestGoodBackup = newestGoodBackup
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
        if let newest = state.newestGoodBackup, newest >= window.start {
            return DueDecision(vm: entry.vm, due: false, reason: "backed up in this window (\(Timestamps.iso(newest)))")
        }
        if state.hasOpenJob {
            return DueDecision(vm: entry.vm, due: false, reason: "a job for it is queued or running")
        }
        if let failed = state.lastFailure, failed >= window.start, now.timeIntervalSince(failed) < retryFailedAfter {
            return DueDecision(
                vm: entry.vm, due: false,
                reason: "failed at \(Timestamps.iso(failed)); retried \(Int(retryFailedAfter / 60)) min after a failure"
            )
        }
        return DueDecision(vm: entry.vm, due: true, reason: "scheduled, no backup yet in this window")
    }
}
