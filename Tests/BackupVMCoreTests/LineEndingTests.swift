import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9, finding 9: in Swift "\r\n" is one Character, so splitting on "\n" never split a CRLF
/// file. A CRLF sheduler.conf (or profile) starting with a comment was one comment line: it set
/// nothing, and `config check` said OK. CRLF now means what LF means; any other line break inside a
/// line is refused with file:line; an empty schedule is warned about.
@Suite("line endings of configuration and job files", .tags(.unit))
struct LineEndingTests {
    /// The text with every LF turned into CRLF, as a Windows editor saves it.
    func crlf(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "\r\n") }

    @Test("a CRLF backup_vm.conf loads exactly as its LF original")
    func crlfMainConfig() throws {
        var f = ConfigFixture()
        f.main = crlf("# hypervisors\n" + f.main + "\n")
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.main.hostServers == ["kvm1", "kvm2"])
        #expect(c.main.backupStorage == f.dir.path + "/storage")
        #expect(c.main.backupHours == HoursWindow(startMinute: 22 * 60, endMinute: 4 * 60))
        #expect(c.main.maxBackupThreads == 3 && c.main.maxBackupThreadsForHost == 2)
    }

    @Test("a CRLF sheduler.conf that starts with a comment schedules its VMs, on the lines an editor shows")
    func crlfSchedule() throws {
        var f = ConfigFixture()
        f.schedule = crlf(f.schedule)
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.schedule.entries.map(\.vm) == ["web01", "db01"])
        #expect(c.schedule.entries.map(\.line) == [2, 3])
        #expect(c.schedule.entry(for: "web01")?.keepOnHost == true)
        #expect(c.warnings.isEmpty, "\(c.warnings)")
    }

    @Test("CRLF vmsnapshot.d profiles (default and a VM's own) set their keys")
    func crlfProfiles() throws {
        var f = ConfigFixture()
        f.defaultProfile = crlf("# defaults\nMode=cold\nWorkPath=/srv/work\n")
        f.profiles["db01"] = crlf("# db01 runs on LVM\nMode=hot\nSnapshotSize=8M\n")
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.defaultProfile.workPath == "/srv/work")
        #expect(c.profile(for: "db01").mode == .hot && c.profile(for: "db01").snapshotSize == "8M")
    }

    @Test("errors in a CRLF file name the line an editor shows")
    func crlfLineNumbers() {
        var f = ConfigFixture()
        f.schedule = crlf("# comment\nweb01 * 3\ndb01 * 0\n")
        let d = f.diagnostics()
        #expect(d.count == 1, "\(d)")
        #expect(d.first?.description.contains("sheduler.conf:3: KEEP='0': expected a whole number") == true, "\(d)")
    }

    /// A lone CR (old Mac editors), VT, FF, NEL and the Unicode separators break a line for some
    /// tools and not for others; a line holding one is refused, also inside what looks like a comment.
    @Test(
        "any other line break inside a line is refused with file and line",
        arguments: [
            ("\r", "carriage return (CR)"), ("\u{0B}", "U+000B"), ("\u{0C}", "U+000C"), ("\u{85}", "U+0085"),
            ("\u{2028}", "U+2028"), ("\u{2029}", "U+2029"),
        ])
    func strayLineBreaks(_ separator: String, _ named: String) {
        var schedule = ConfigFixture()
        schedule.schedule = "web01 * 3\n# comment\(separator)db01 * 2"
        let s = schedule.diagnostics()
        #expect(s.count == 1, "\(s)")
        #expect(s.first?.description.contains("sheduler.conf:2: ") == true, "\(s)")
        #expect(s.first?.message.contains(named) == true, "\(s)")
        #expect(s.first?.message.contains("expected lines ending in LF or CRLF") == true, "\(s)")
        var profile = ConfigFixture()
        profile.profiles["db01"] = "# comment\(separator)Mode=hot"
        let p = profile.diagnostics()
        #expect(p.count == 1 && p.first?.file.hasSuffix("vmsnapshot.d/db01") == true, "\(p)")
        #expect(p.first?.line == 1 && p.first?.message.contains(named) == true, "\(p)")
    }

    @Test("old Mac line endings (CR only) are refused, not read as one comment that schedules nothing")
    func crOnlySchedule() {
        var f = ConfigFixture()
        f.schedule = "# VMs\rweb01 * 3\rdb01 * 2\r"
        let d = f.diagnostics()
        #expect(d.count == 1 && d.first?.line == 1, "\(d)")
        #expect(d.first?.message.contains("lone carriage return (CR) inside the line") == true, "\(d)")
    }

    @Test("a sheduler.conf that schedules no VM loads, with a warning naming the file and what is expected")
    func emptyScheduleWarns() throws {
        var f = ConfigFixture()
        f.schedule = "# nothing here yet\n\n"
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.schedule.entries.isEmpty)
        #expect(c.warnings.count == 1, "\(c.warnings)")
        let w = try #require(c.warnings.first)
        #expect(w.file.hasSuffix("backup_vm.d/sheduler.conf"), "\(w)")
        #expect(w.description.contains("schedules no VM"), "\(w)")
        #expect(w.description.contains("expected: VM_NAME DAYS KEEP [KEEP_ON_HOST]"), "\(w)")
        let scheduled = ConfigFixture()
        #expect(try Configuration.load(directory: scheduled.materialize()).warnings.isEmpty)
    }

    @Test("a CRLF job file is the same job; its result block appended with LF still reads back")
    func crlfJobFile() throws {
        let request = JobRequest(vm: "web01", requestedBy: "op", created: "2026-11-27T10:00:00Z")
        var text = crlf("# queued by hand\n" + request.serialized())
        let job = try JobFile.parse(Array(text.utf8))
        #expect(job.request == request)
        text += JobResult(status: .done, host: "kvm1", workerPID: 42).serialized()
        let finished = try JobFile.parse(Array(text.utf8))
        #expect(finished.request == request && finished.resultStatus == .done)
        #expect(finished.resultFields["host"] == "kvm1")
    }

    @Test("a job file with a lone CR fails with the line and what was expected")
    func strayBreakInJobFile() {
        #expect {
            _ = try JobFile.parse(Array("# note\rvm=web01\n".utf8))
        } throws: { error in
            "\(error)".contains("line 1: a lone carriage return (CR) inside the line")
                && "\(error)".contains("expected lines ending in LF or CRLF")
        }
    }
}

/// The operator's view of the same finding: `backup_vm config check` (the real binary).
@Suite("config check on CRLF and empty schedules", .tags(.spool))
struct ConfigCheckLineEndingTests {
    func check(schedule: String) throws -> (status: Int32, out: String, err: String) {
        var f = ConfigFixture("check")
        f.schedule = schedule
        return try runTool(Paths.binary("backup_vm"), ["config", "check", "--config-dir", f.materialize()])
    }

    @Test("a CRLF sheduler.conf: OK with its 2 VMs, no warning")
    func crlfScheduleCounts() throws {
        let r = try check(schedule: "# VMs\r\nweb01 * 3\r\ndb01 Mon-Fri 2 yes\r\n")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("2 VM(s) scheduled"), "\(r.out)")
        #expect(!r.err.contains("warning"), "\(r.err)")
    }

    @Test("a sheduler.conf without a VM: a warning on stderr naming the file; still exit 0")
    func emptyScheduleWarning() throws {
        let r = try check(schedule: "# nothing yet")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("OK, with 1 warning(s)"), "\(r.out)")
        #expect(r.err.contains("warning: "), "\(r.err)")
        #expect(r.err.contains("backup_vm.d/sheduler.conf: schedules no VM"), "\(r.err)")
    }

    @Test("old Mac line endings: exit 2 with file:line")
    func crOnlyScheduleFails() throws {
        let r = try check(schedule: "# VMs\rweb01 * 3\r")
        #expect(r.status == 2, "\(r.out)")
        #expect(r.err.contains("sheduler.conf:1: a lone carriage return (CR)"), "\(r.err)")
    }
}
