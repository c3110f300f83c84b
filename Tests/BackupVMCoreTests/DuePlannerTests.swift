import Foundation
import Logging
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

    /// What `status` shows as due next: the next opening of a window on one of the VM's days.
    @Test func theNextWindowOpensOnTheNextScheduledDay() {
        let weekdays = entry("Mon-Fri").weekdays
        // Friday 2026-12-04 23:00, inside Friday's window: the next is Monday's.
        #expect(planner.nextWindow(after: at(2026, 12, 4, 23), hours: night, weekdays: weekdays) == at(2026, 12, 7, 22))
        // Wednesday noon: tonight's.
        #expect(planner.nextWindow(after: at(2026, 12, 2, 12), hours: night, weekdays: weekdays) == at(2026, 12, 2, 22))
        // Sunday only, asked on Sunday after the start: a week later.
        #expect(
            planner.nextWindow(after: at(2026, 12, 6, 22, 30), hours: night, weekdays: entry("Sun").weekdays)
                == at(2026, 12, 13, 22))
    }

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

/// Issue #9, finding 16 (the planner's side): the clock set back after a backup makes that backup's ID
/// lie in the future. It must not make the VM "backed up in this window" until the clock catches up.
extension DuePlannerTests {
    @Test("a VM whose newest backup is dated 3 days ahead is still due, with a warning naming VM and backup")
    func futureDatedBackupStillDue() throws {
        let now = at(2026, 11, 30, 23)
        let future = now.addingTimeInterval(3 * 86400)
        let id = Timestamps.compact(future)
        let state = DuePlanner.VMState(newestGoodBackup: future, newestBackupID: id)
        let d = planner.decide(entry("Mon"), now: now, hours: night, state: state, retryFailedAfter: 3600)
        #expect(d.due, "\(d)")
        let warning = try #require(d.warning)
        #expect(warning.contains("web01") && warning.contains(id), "\(warning)")
        #expect(warning.contains("the clock was set back"), "\(warning)")
        // Outside the window or on another day it stays not due, as without that backup.
        #expect(!planner.decide(entry("Tue"), now: now, hours: night, state: state, retryFailedAfter: 0).due)
        #expect(
            !planner.decide(entry("Mon"), now: at(2026, 11, 30, 12), hours: night, state: state, retryFailedAfter: 0)
                .due)
        // A backup of this window (not in the future) warns about nothing.
        let normal = DuePlanner.VMState(newestGoodBackup: at(2026, 11, 30, 22, 30), newestBackupID: "x")
        #expect(planner.decide(entry("Mon"), now: now, hours: night, state: normal, retryFailedAfter: 0).warning == nil)
    }

    @Test("a failure dated in the future does not hold the retry off until the clock catches up")
    func futureDatedFailureDoesNotBlock() {
        let now = at(2026, 11, 30, 23)
        let state = DuePlanner.VMState(lastFailure: now.addingTimeInterval(3 * 86400))
        #expect(planner.decide(entry("*"), now: now, hours: night, state: state, retryFailedAfter: 3600).due)
    }
}

/// The cron tick over a real storage folder: which backup counts as the newest after the clock went back.
@Suite("cron tick and backups dated in the future", .tags(.unit))
struct EnqueuerClockTests {
    let fixture: ConfigFixture
    let configuration: Configuration
    let messages = CapturedMessages()

    init() throws {
        var f = ConfigFixture("tick")
        f.main = f.main.replacingOccurrences(of: "BackupHours=22-04", with: "BackupHours=0-24")
        f.schedule = "web01 * 3"
        fixture = f
        configuration = try Configuration.load(directory: f.materialize())
    }

    var store: BackupStore { BackupStore(storage: configuration.main.backupStorage) }

    func tick(at now: Date) throws -> DueDecision? {
        let messages = self.messages
        let enqueuer = Enqueuer(
            configuration: configuration, spool: Spool(root: configuration.main.spoolDir),
            planner: DuePlanner(timeZone: TimeZone(identifier: "UTC")!),
            logger: Logger(label: "tick-test") { _ in CapturingLogHandler(messages: messages) })
        return try enqueuer.tick(now: now, dryRun: true).decisions.first
    }

    /// A committed backup of web01 with this start time and commit sequence.
    func commit(started: Date, sequence: Int) throws {
        let id = Timestamps.compact(started)
        let manifest = Manifest(
            vm: "web01", id: id, host: "kvm1", mode: .cold, requestedMode: .cold, modeNote: nil,
            priorState: .running, compression: .lzop, started: Timestamps.iso(started),
            finished: Timestamps.iso(started), durationSeconds: 1, downtimeSeconds: 1, disks: [], excluded: [],
            ramState: nil, domainXML: "<domain/>", keptOnHost: false, sequence: sequence)
        let partial = try store.beginBackup(vm: "web01", id: id)
        _ = try store.commit(manifest, partial: partial)
    }

    @Test("the tick plans the VM once and warns; the backup it makes then counts, though its ID is older")
    func futureDatedNewestBackup() throws {
        let now = try #require(Timestamps.parseISO("2026-11-30T12:00:00Z"))
        let future = now.addingTimeInterval(3 * 86400)
        try commit(started: future, sequence: 1)
        let first = try #require(try tick(at: now))
        #expect(first.due, "\(first)")
        let futureID = Timestamps.compact(future)
        #expect(messages.contains("warning web01: its newest backup \(futureID) is dated"), "\(messages.all)")
        // The backup that tick asked for: made now, committed after the future-dated one.
        try commit(started: now.addingTimeInterval(60), sequence: 2)
        let next = try #require(try tick(at: now.addingTimeInterval(600)))
        #expect(!next.due && next.reason.contains("backed up in this window"), "\(next)")
        #expect(next.warning == nil)
    }
}
