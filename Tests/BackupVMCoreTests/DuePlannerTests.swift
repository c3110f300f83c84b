import Foundation
import Testing

@testable import BackupVMCore

@Suite("due planner (cron tick decisions)", .tags(.unit))
struct DuePlannerTests {
    let berlin = TimeZone(identifier: "Europe/Berlin")!
    var planner: DuePlanner { DuePlanner(timeZone: berlin) }

    /// A local wall-clock time in Berlin.
    func at(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int = 0, repeatedHourSecond: Bool = false) -> Date {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = berlin
        let date = cal.date(from: DateComponents(year: y, month: mo, day: d, hour: h, minute: mi))!
        return repeatedHourSecond ? date.addingTimeInterval(3600) : date
    }

    func entry(_ days: String) -> ScheduleEntry {
        ScheduleEntry(vm: "web01", weekdays: Weekdays.parse(days)!, keep: 3, keepOnHost: false, line: 1)
    }

    let night = HoursWindow.parse("22-04")!

    // 2026-11-30 is a Monday.
    @Test func insideWindowOnScheduledDay() {
        let d = planner.decide(
            entry("Mon"), now: at(2026, 11, 30, 23), hours: night, state: .init(), retryFailedAfter: 3600)
        #expect(d.due, "\(d)")
    }

    @Test func outsideWindow() {
        let d = planner.decide(
            entry("*"), now: at(2026, 11, 30, 12), hours: night, state: .init(), retryFailedAfter: 3600)
        #expect(!d.due && d.reason.contains("outside BackupHours"))
        let end = planner.decide(
            entry("*"), now: at(2026, 12, 1, 4, 0), hours: night, state: .init(), retryFailedAfter: 3600)
        #expect(!end.due, "the end hour is exclusive")
    }

    @Test func afterMidnightBelongsToTheDayTheWindowOpened() {
        // Tuesday 01:00 is inside Monday's window.
        let tue1am = at(2026, 12, 1, 1)
        #expect(planner.decide(entry("Mon"), now: tue1am, hours: night, state: .init(), retryFailedAfter: 0).due)
        let tueOnly = planner.decide(entry("Tue"), now: tue1am, hours: night, state: .init(), retryFailedAfter: 0)
        #expect(!tueOnly.due && tueOnly.reason.contains("Mon"), "\(tueOnly)")
    }

    @Test func weekdayBoundaryInWholeDayWindow() {
        let mondayOnly = entry("Mon")
        #expect(
            !planner.decide(
                mondayOnly, now: at(2026, 11, 29, 23, 59), hours: .wholeDay, state: .init(), retryFailedAfter: 0
            ).due)
        #expect(
            planner.decide(
                mondayOnly, now: at(2026, 11, 30, 0, 0), hours: .wholeDay, state: .init(), retryFailedAfter: 0
            ).due)
        #expect(
            !planner.decide(
                mondayOnly, now: at(2026, 12, 1, 0, 0), hours: .wholeDay, state: .init(), retryFailedAfter: 0
            ).due)
    }

    @Test func goodBackupInThisWindowMeansNotDue() {
        let state = DuePlanner.VMState(newestGoodBackup: at(2026, 11, 30, 22, 30))
        let d = planner.decide(entry("Mon"), now: at(2026, 12, 1, 1), hours: night, state: state, retryFailedAfter: 0)
        #expect(!d.due && d.reason.contains("backed up in this window"))
    }

    @Test func backupFromThePreviousWindowDoesNotCount() {
        // Backed up early Monday (inside Sunday's window): Monday night is due again.
        let state = DuePlanner.VMState(newestGoodBackup: at(2026, 11, 30, 3))
        #expect(
            planner.decide(entry("*"), now: at(2026, 11, 30, 22, 10), hours: night, state: state, retryFailedAfter: 0)
                .due)
    }

    @Test func openJobMeansNotDue() {
        let d = planner.decide(
            entry("*"), now: at(2026, 11, 30, 23), hours: night, state: .init(hasOpenJob: true), retryFailedAfter: 0)
        #expect(!d.due && d.reason.contains("queued or running"))
    }

    @Test func recentFailureIsRetriedLater() {
        let failedAt = at(2026, 11, 30, 22, 30)
        let soon = planner.decide(
            entry("*"), now: at(2026, 11, 30, 22, 50), hours: night,
            state: .init(lastFailure: failedAt), retryFailedAfter: 3600)
        #expect(!soon.due && soon.reason.contains("failed"))
        let later = planner.decide(
            entry("*"), now: at(2026, 11, 30, 23, 40), hours: night,
            state: .init(lastFailure: failedAt), retryFailedAfter: 3600)
        #expect(later.due)
    }

    @Test func springForwardWindowStartThatDoesNotExist() {
        // 2026-03-29 (Sunday), Berlin: 02:00 jumps to 03:00. Window 02:30-04 opens at 03:00 that day.
        let w = HoursWindow.parse("02:30-04")!
        let now = at(2026, 3, 29, 3, 10)
        let occurrence = planner.windowOccurrence(containing: now, hours: w)
        #expect(occurrence != nil)
        #expect(occurrence!.isoWeekday == 7)
        #expect(occurrence!.start <= now)
        #expect(planner.decide(entry("Sun"), now: now, hours: w, state: .init(), retryFailedAfter: 0).due)
        let backedUp = DuePlanner.VMState(newestGoodBackup: at(2026, 3, 29, 3, 5))
        #expect(!planner.decide(entry("Sun"), now: now, hours: w, state: backedUp, retryFailedAfter: 0).due)
    }

    @Test func fallBackRepeatedHourDoesNotBackUpTwice() {
        // 2026-10-25 (Sunday), Berlin: 03:00 falls back to 02:00, so 02:30 happens twice.
        let first = at(2026, 10, 25, 2, 30)
        let second = first.addingTimeInterval(3600)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = berlin
        #expect(cal.component(.hour, from: second) == 2, "the hour repeats")
        let state = DuePlanner.VMState(newestGoodBackup: first)
        let d = planner.decide(entry("Sat"), now: second, hours: night, state: state, retryFailedAfter: 0)
        #expect(!d.due, "\(d)")
        // And the window still belongs to Saturday.
        #expect(planner.windowOccurrence(containing: second, hours: night)?.isoWeekday == 6)
    }
}
