import Foundation
import Testing

@testable import BackupVMCore

@Suite("configuration", .tags(.unit))
struct ConfigTests {
    /// Asserts exactly one diagnostic naming the file (by suffix), the line, and the given fragments.
    func expectOne(
        _ fixture: ConfigFixture, file: String, line: Int, contains fragments: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let diagnostics = fixture.diagnostics()
        #expect(diagnostics.count == 1, "\(diagnostics)", sourceLocation: sourceLocation)
        guard let d = diagnostics.first else { return }
        #expect(d.file.hasSuffix(file), "\(d)", sourceLocation: sourceLocation)
        #expect(d.line == line, "\(d)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(d.description.contains(f), "'\(f)' not in: \(d)", sourceLocation: sourceLocation)
        }
        #expect(d.description.contains("\(file):\(line)") || line == 0, "\(d)", sourceLocation: sourceLocation)
    }

    @Test func validFixtureLoads() throws {
        let f = ConfigFixture()
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.main.hostServers == ["kvm1", "kvm2"])
        #expect(c.main.backupStorage == f.dir.path + "/storage")
        #expect(c.main.backupHours == HoursWindow(startMinute: 22 * 60, endMinute: 4 * 60))
        #expect(c.main.maxBackupThreads == 3 && c.main.maxBackupThreadsForHost == 2)
        #expect(c.main.spoolDir == f.dir.path + "/spool")
        #expect(c.schedule.entries.map(\.vm) == ["web01", "db01"])
        #expect(c.schedule.entry(for: "web01")?.weekdays == Weekdays(Set(1...5)))
        #expect(c.schedule.entry(for: "web01")?.keepOnHost == true)
        #expect(c.schedule.entry(for: "db01")?.keep == 2 && c.schedule.entry(for: "db01")?.keepOnHost == false)
        #expect(c.profile(for: "web01").mode == .cold)
    }

    @Test func shippedExamplesPassCheck() throws {
        let c = try Configuration.load(directory: Paths.packageRoot)
        #expect(!c.main.hostServers.isEmpty)
        #expect(!c.schedule.entries.isEmpty)
    }

    @Test func quotingAndComments() throws {
        var f = ConfigFixture()
        f.main = """
            # a comment
            export HostServers='kvm1 kvm2'   # trailing comment
            BackupStorage="/srv/back ups"
            BackupHours=0-24
            MaxBackupThreads=4
            """
        let c = try Configuration.load(directory: f.materialize())
        #expect(c.main.hostServers == ["kvm1", "kvm2"])
        #expect(c.main.backupStorage == "/srv/back ups")
        #expect(c.main.backupHours == .wholeDay)
        #expect(c.main.maxBackupThreadsForHost == 1)
    }

    @Test func unknownKey() {
        var f = ConfigFixture()
        f.main += "\nMaxBackupTreads=3"
        expectOne(f, file: "backup_vm.d/backup_vm.conf", line: 6, contains: ["MaxBackupTreads", "unknown key"])
    }

    @Test func unknownKeySuggestsCase() {
        var f = ConfigFixture()
        f.main += "\nbackuphours=1-2"
        expectOne(f, file: "backup_vm.conf", line: 6, contains: ["did you mean BackupHours"])
    }

    @Test func badNumber() {
        var f = ConfigFixture()
        f.main = f.main.replacingOccurrences(of: "MaxBackupThreads=3", with: "MaxBackupThreads=three")
        expectOne(
            f, file: "backup_vm.conf", line: 4,
            contains: ["MaxBackupThreads='three'", "expected a whole number from 1 to 64"])
    }

    @Test func zeroThreads() {
        var f = ConfigFixture()
        f.main = f.main.replacingOccurrences(of: "MaxBackupThreadsForHost=2", with: "MaxBackupThreadsForHost=0")
        expectOne(f, file: "backup_vm.conf", line: 5, contains: ["MaxBackupThreadsForHost='0'", "from 1 to 64"])
    }

    @Test func perHostAboveGlobal() {
        var f = ConfigFixture()
        f.main = f.main.replacingOccurrences(of: "MaxBackupThreadsForHost=2", with: "MaxBackupThreadsForHost=5")
        expectOne(f, file: "backup_vm.conf", line: 5, contains: ["expected at most MaxBackupThreads (3)"])
    }

    @Test(arguments: ["22", "22-", "-4", "25-3", "3-3", "0-0", "a-b", "22:61-4", "24-2", ""])
    func malformedOrEmptyHours(_ value: String) {
        var f = ConfigFixture()
        f.main = f.main.replacingOccurrences(of: "BackupHours=22-04", with: "BackupHours=\(value)")
        let d = f.diagnostics()
        #expect(d.count == 1, "\(d)")
        #expect(d.first?.line == 3)
        #expect(d.first?.key == "BackupHours")
        #expect(d.first?.description.contains("expected") == true)
    }

    @Test func windowAcrossMidnightIsValid() throws {
        let w = try #require(HoursWindow.parse("22-04"))
        #expect(w.crossesMidnight)
        #expect(w.contains(minuteOfDay: 23 * 60) && w.contains(minuteOfDay: 0) && w.contains(minuteOfDay: 3 * 60 + 59))
        #expect(
            !w.contains(minuteOfDay: 4 * 60) && !w.contains(minuteOfDay: 12 * 60)
                && !w.contains(minuteOfDay: 21 * 60 + 59))
        let m = try #require(HoursWindow.parse("21:30-05:15"))
        #expect(m.startMinute == 21 * 60 + 30 && m.endMinute == 5 * 60 + 15)
        #expect(HoursWindow.parse("0-24") == .wholeDay)
        #expect(HoursWindow.parse("20-24") == HoursWindow(startMinute: 1200, endMinute: 1440))
    }

    @Test func badWeekday() {
        var f = ConfigFixture()
        f.schedule = "web01  Mon,Funday  7"
        expectOne(f, file: "backup_vm.d/sheduler.conf", line: 1, contains: ["DAYS='Mon,Funday'", "expected weekdays"])
    }

    @Test func weekdaySpellings() {
        #expect(Weekdays.parse("*") == .all)
        #expect(Weekdays.parse("mon-fri") == Weekdays(Set(1...5)))
        #expect(Weekdays.parse("Sat,Sun") == Weekdays([6, 7]))
        #expect(Weekdays.parse("0,1") == Weekdays([7, 1]))
        #expect(Weekdays.parse("Fri-Mon") == Weekdays([5, 6, 7, 1]))
        #expect(Weekdays.parse("Monday,Wednesday") == Weekdays([1, 3]))
        #expect(Weekdays.parse("8") == nil)
        #expect(Weekdays.parse("Mon,,Tue") == nil)
        #expect(Weekdays.parse("") == nil)
    }

    @Test(arguments: ["0", "-1", "x", "1.5"])
    func keepCountBelowOneOrNotANumber(_ keep: String) {
        var f = ConfigFixture()
        f.schedule = "web01  *  \(keep)"
        expectOne(
            f, file: "sheduler.conf", line: 1,
            contains: ["KEEP='\(keep)'", "expected a whole number of backups to keep"])
    }

    @Test func duplicateVMLine() {
        var f = ConfigFixture()
        f.schedule = "web01 * 3\n\n# x\nweb01 Mon 2"
        expectOne(
            f, file: "sheduler.conf", line: 4, contains: ["VM_NAME='web01'", "duplicate VM line (first on line 1)"])
    }

    @Test func wrongFieldCount() {
        var f = ConfigFixture()
        f.schedule = "web01 * 3 yes extra"
        expectOne(f, file: "sheduler.conf", line: 1, contains: ["5 fields", "expected: VM_NAME DAYS KEEP"])
    }

    @Test func badKeepOnHost() {
        var f = ConfigFixture()
        f.schedule = "web01 * 3 maybe"
        expectOne(f, file: "sheduler.conf", line: 1, contains: ["KEEP_ON_HOST='maybe'", "expected yes or no"])
    }

    @Test(arguments: ["web/01", "..", "../etc", "web 01", "web;rm", "a$b", "a`b`", "-web", ".hidden", "a|b", "a&b"])
    func unsafeVMName(_ name: String) {
        var f = ConfigFixture()
        f.schedule = "\(name.contains(" ") ? "\"\(name)\"" : name) * 3"
        let d = f.diagnostics()
        #expect(!d.isEmpty)
        #expect(d.allSatisfy { $0.file.hasSuffix("sheduler.conf") && $0.line == 1 }, "\(d)")
        #expect(SafeName.isValidVMName(name) == false)
    }

    @Test(arguments: ["kvm/1", "..", "kvm;1", "$(reboot)", "-oProxyCommand=x", "kvm`x`"])
    func unsafeHostName(_ host: String) {
        var f = ConfigFixture()
        f.main = f.main.replacingOccurrences(of: "HostServers=\"kvm1 kvm2\"", with: "HostServers='kvm1 \(host)'")
        let d = f.diagnostics()
        #expect(d.count == 1, "\(d)")
        #expect(d.first?.line == 1)
        #expect(d.first?.key == "HostServers")
        #expect(d.first?.description.contains("expected a host name") == true, "\(d)")
    }

    @Test func shellSyntaxIsRefused() {
        var f = ConfigFixture()
        f.main += "\nSpoolDir=$HOME/spool"
        expectOne(f, file: "backup_vm.conf", line: 6, contains: ["SpoolDir", "not supported"])
    }

    @Test func missingRequiredKeys() {
        var f = ConfigFixture()
        f.main = "BackupHours=1-2"
        let d = f.diagnostics()
        #expect(d.count == 2, "\(d)")
        #expect(d.contains { $0.key == "HostServers" && $0.message.contains("required") })
        #expect(d.contains { $0.key == "BackupStorage" && $0.message.contains("missing") })
    }

    @Test func missingDefaultProfile() {
        let f = ConfigFixture()
        _ = f.materialize()
        f.dir.remove("vmsnapshot.d/default")
        do {
            _ = try Configuration.load(directory: f.dir.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostics.count == 1)
            #expect(error.diagnostics[0].file.hasSuffix("vmsnapshot.d/default"))
            #expect(error.diagnostics[0].description.contains("missing default profile"))
        }
    }

    @Test func unknownMode() {
        var f = ConfigFixture()
        f.profiles["web01"] = "Mode=warm"
        expectOne(f, file: "vmsnapshot.d/web01", line: 1, contains: ["Mode='warm'", "expected one of cold, hot"])
    }

    @Test func relativeWorkingPath() {
        var f = ConfigFixture()
        f.defaultProfile = "Mode=cold\nWorkPath=var/lib/backup_vm"
        expectOne(
            f, file: "vmsnapshot.d/default", line: 2,
            contains: ["WorkPath='var/lib/backup_vm'", "expected an absolute path"])
    }

    @Test func dotDotWorkingPath() {
        var f = ConfigFixture()
        f.profiles["db01"] = "WorkPath=/var/lib/../../etc"
        expectOne(f, file: "vmsnapshot.d/db01", line: 1, contains: ["without '..'"])
    }

    @Test func profileInheritsDefault() throws {
        var f = ConfigFixture()
        f.defaultProfile = "Mode=cold\nWorkPath=/srv/work\nShutdownTimeout=60"
        f.profiles["db01"] = "Mode=hot\nExcludeLVs=\"vg0/db01-swap /dev/vg0/db01-tmp\""
        let c = try Configuration.load(directory: f.materialize())
        let p = c.profile(for: "db01")
        #expect(p.mode == .hot && p.workPath == "/srv/work" && p.shutdownTimeout == 60)
        #expect(p.excludeLVs == ["vg0/db01-swap", "/dev/vg0/db01-tmp"])
        #expect(c.profile(for: "web01").mode == .cold)
    }

    @Test func badExcludedLV() {
        var f = ConfigFixture()
        f.profiles["db01"] = "ExcludeLVs='vg0/../x'"
        expectOne(f, file: "vmsnapshot.d/db01", line: 1, contains: ["ExcludeLVs", "expected a logical volume"])
    }

    @Test func profileFileWithUnsafeName() {
        var f = ConfigFixture()
        f.profiles["bad name"] = "Mode=hot"
        expectOne(f, file: "vmsnapshot.d/bad name", line: 0, contains: ["not a valid VM name"])
    }

    @Test func editorBackupsAreIgnored() throws {
        var f = ConfigFixture()
        f.profiles["web01~"] = "Mode=garbage"
        f.profiles["web01.dpkg-old"] = "Mode=garbage"
        _ = try Configuration.load(directory: f.materialize())
    }

    @Test func everyProblemIsReportedAtOnce() {
        var f = ConfigFixture()
        f.main += "\nCompression=gzip\nSyslogFacility=kern"
        f.schedule = "web01 Xday 1\ndb01 * 0"
        let d = f.diagnostics()
        #expect(d.count == 4, "\(d)")
    }

    @Test func keySetTwice() {
        var f = ConfigFixture()
        f.main += "\nMaxBackupThreads=4"
        expectOne(f, file: "backup_vm.conf", line: 6, contains: ["set twice (first on line 4)"])
    }

    @Test func unterminatedQuote() {
        var f = ConfigFixture()
        f.main += "\nSpoolDir=\"/var/spool"
        expectOne(f, file: "backup_vm.conf", line: 6, contains: ["closing double quote"])
    }

    @Test func lineWithoutEquals() {
        var f = ConfigFixture()
        f.main += "\nMaxBackupThreads 3"
        expectOne(f, file: "backup_vm.conf", line: 6, contains: ["expected Key=value"])
    }

    @Test func missingConfigFile() {
        let f = ConfigFixture()
        _ = f.materialize()
        f.dir.remove("backup_vm.d/sheduler.conf")
        do {
            _ = try Configuration.load(directory: f.dir.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("sheduler.conf: missing"))
        }
    }
}
