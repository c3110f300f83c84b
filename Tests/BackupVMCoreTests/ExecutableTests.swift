import Foundation
import Testing

@testable import BackupVMCore

/// The shipped executables, run as an operator runs them.
@Suite("executables", .tags(.spool), .serialized)
struct ExecutableTests {
    let fixture: ConfigFixture
    let configDir: String
    let collector: SyslogCollector

    init() {
        var f = ConfigFixture("exe")
        let socket = f.dir.path + "/syslog.sock"
        f.main += """

            BackupHours=0-24
            SyslogSocket=\(socket)
            SyslogFacility=local5
            SpoolRescanSeconds=3600
            """
        f.main = f.main.replacingOccurrences(of: "BackupHours=22-04\n", with: "")
        fixture = f
        configDir = f.materialize()
        collector = SyslogCollector(path: socket)
    }

    var spool: Spool { Spool(root: configDir + "/spool") }

    func backupVM(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try runTool(Paths.binary("backup_vm"), args + ["--config-dir", configDir])
    }

    @Test func configCheckOnShippedExamples() throws {
        let r = try runTool(Paths.binary("backup_vm"), ["config", "check", "--config-dir", Paths.packageRoot])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("OK"))
    }

    @Test func configCheckNamesFileAndLine() throws {
        fixture.dir.write("backup_vm.d/sheduler.conf", "web01 * 3\nweb01 Mon 0\n")
        let r = try backupVM(["config", "check"])
        #expect(r.status == 2)
        #expect(
            r.err.contains("backup_vm.d/sheduler.conf:2: VM_NAME='web01': duplicate VM line (first on line 1)"),
            "\(r.err)")
        #expect(r.err.contains("sheduler.conf:2: KEEP='0'"), "\(r.err)")
    }

    @Test func enqueueValidatesAndWrites() throws {
        let ok = try backupVM(["enqueue", "web01"])
        #expect(ok.status == 0, "\(ok.err)")
        let names = spool.names(in: .new)
        #expect(names.count == 1)
        #expect(spool.peek(names[0])?.request.vm == "web01")
        let unknown = try backupVM(["enqueue", "nosuch"])
        #expect(unknown.status != 0 && unknown.err.contains("unknown VM 'nosuch'"), "\(unknown.err)")
        let unsafe = try backupVM(["enqueue", "../etc"])
        #expect(unsafe.status != 0 && unsafe.err.contains("not a valid VM name"), "\(unsafe.err)")
        #expect(spool.names(in: .new).count == 1, "nothing queued for bad names")
    }

    @Test func schedulerTickIsIdempotent() throws {
        let tick = Paths.binary("vm_backup_sheduler")
        // A Wednesday noon: web01 is scheduled Mon-Fri (this test failed on weekends without it).
        let wednesday = ["--now", "2026-11-25T12:00:00Z"]
        let dry = try runTool(tick, ["--config-dir", configDir, "--dry-run"] + wednesday)
        #expect(dry.status == 0, "\(dry.err)")
        #expect(dry.out.contains("web01: due") && dry.out.contains("db01: due"), "\(dry.out)")
        #expect(spool.names(in: .new).isEmpty, "a dry run queues nothing")
        for _ in 0..<2 {
            let r = try runTool(tick, ["--config-dir", configDir] + wednesday)
            #expect(r.status == 0, "\(r.err)")
        }
        let vms = spool.names(in: .new).compactMap { spool.peek($0)?.request.vm }.sorted()
        #expect(vms == ["db01", "web01"], "one job per due VM after two ticks: \(vms)")
        #expect(
            eventually(timeout: 10) {
                collector.messages.contains { $0.contains("vm_backup_sheduler") || $0.contains("enqueued") }
            })
    }

    @Test func schedulerRespectsTheWindowAndWeekdays() throws {
        fixture.dir.write(
            "backup_vm.d/backup_vm.conf",
            fixture.main.replacingOccurrences(of: "BackupHours=0-24", with: "BackupHours=22-04") + "\n")
        fixture.dir.write("backup_vm.d/sheduler.conf", "web01 Mon 3\ndb01 Tue 3\n")
        // Tuesday 2026-12-01 01:00 UTC is inside Monday's 22-04 window.
        let r = try runTool(
            Paths.binary("vm_backup_sheduler"), ["--config-dir", configDir, "--now", "2026-12-01T01:00:00Z"],
            environment: ["TZ": "UTC"])
        #expect(r.status == 0, "\(r.err)")
        let vms = spool.names(in: .new).compactMap { spool.peek($0)?.request.vm }
        #expect(vms == ["web01"], "\(vms)")
    }

    @Test func daemonSurvivesGarbageAndStopsOnSIGTERM() throws {
        try spool.prepare()
        let daemon = try ChildProcess(Paths.binary("backup_vmd"), ["--config-dir", configDir])
        defer { daemon.stop() }
        #expect(
            eventually(timeout: 60) { collector.messages.contains { $0.contains("backup_vmd started") } },
            "start-up reached syslog: \(collector.messages) \(daemon.standardError)")
        // local5 = 21, notice = 5 -> <173>
        #expect(collector.messages.first { $0.contains("backup_vmd started") }?.hasPrefix("<173>") == true)

        // Garbage dropped by hand (no rename, so only inotify's IN_CLOSE_WRITE can wake the daemon:
        // the rescan timer is an hour).
        let garbage: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 0x00, 0xff, 0xfe]
        FileManager.default.createFile(atPath: spool.layout.new + "/garbage.job", contents: Data(garbage))
        #expect(eventually(timeout: 60) { spool.names(in: .failed).contains("garbage.job") })
        let record = try String(
            decoding: Data(contentsOf: URL(fileURLWithPath: spool.layout.failed + "/garbage.job")), as: UTF8.self)
        #expect(record.contains("status=failed"))
        #expect(record.contains("reason=unreadable job: job file is not UTF-8 text"), "\(record)")
        #expect(daemon.isRunning, "the daemon keeps running")

        try "vm=nosuchvm\n".write(toFile: spool.layout.new + "/unknown.job", atomically: false, encoding: .utf8)
        #expect(eventually(timeout: 60) { spool.names(in: .failed).contains("unknown.job") })
        let unknown = try String(contentsOfFile: spool.layout.failed + "/unknown.job", encoding: .utf8)
        #expect(unknown.contains("reason=unknown VM 'nosuchvm'"), "\(unknown)")
        #expect(daemon.isRunning)
        #expect(
            eventually(timeout: 10) {
                collector.messages.contains { $0.contains("backup failed: unknown VM 'nosuchvm'") }
            })

        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 30), "SIGTERM stops the daemon")
        #expect(daemon.process.terminationStatus == 0)
        #expect(eventually(timeout: 10) { collector.messages.contains { $0.contains("backup_vmd stopped") } })
        #expect(spool.names(in: .new).isEmpty && spool.names(in: .active).isEmpty)
    }

    @Test func statusShowsTheSpool() throws {
        _ = try backupVM(["enqueue", "db01"])
        let r = try backupVM(["status"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("QUEUED 1\n") && r.out.contains("  db01 "), "\(r.out)")
    }
}
