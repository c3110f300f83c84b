import Foundation
import Testing

@testable import BackupVMCore

/// Issue #19, item 18: the shipped unit makes the whole file system read-only but the directories it
/// lists (ProtectSystem=strict, ReadWritePaths). A configuration whose BackupStorage (or spool, or
/// metrics directory) lies elsewhere must not give a daemon that starts and then fails every backup
/// at night: the real backup_vmd, started in a mount namespace where BackupStorage is a read-only
/// bind mount (what the sandbox does to a directory it does not list), refuses to start and names the
/// directory and the line to add.
@Suite("daemon: the directories it writes, checked at start", .tags(.spool), .serialized)
struct DaemonSandboxTests {
    @Test("BackupStorage read-only (not in the unit's ReadWritePaths): backup_vmd refuses to start, naming it")
    func readOnlyStorageRefused() throws {
        var f = ConfigFixture("sandbox")
        f.main += "\nSyslogSocket=\(f.dir.path)/no-syslog\nSpoolRescanSeconds=3600\n"
        let config = f.materialize()
        let storage = config + "/storage"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        let script = """
            mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" --config-dir "$3"
            """
        let r = try runTool(
            "/usr/bin/unshare",
            [
                "-m", "--propagation", "private", "/bin/sh", "-c", script, "sh", storage, Paths.binary("backup_vmd"),
                config,
            ],
            timeout: 30)
        #expect(r.status != 0, "it did not start: \(r.err)")
        #expect(
            r.err.contains("BackupStorage \(storage) is not writable for backup_vmd (Read-only file system)")
                && r.err.contains("ReadWritePaths=\(storage)"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: config + "/spool/locks"), "nothing started")
    }

    @Test("the spool, BackupStorage and MetricsFile's directory are checked; a missing one by where it would be made")
    func whatIsChecked() throws {
        let dir = TempDir("writable")
        dir.write(
            "backup_vm.d/backup_vm.conf",
            "HostServers=kvm1\nBackupStorage=\(dir.path)/storage/not/yet\nSpoolDir=\(dir.path)/spool\n"
                + "MetricsFile=\(dir.path)/metrics/backup_vm.prom\n")
        dir.write("backup_vm.d/sheduler.conf", "web01 * 3\n")
        dir.write("vmsnapshot.d/default", "WorkPath=/var/lib/backup_vm\n")
        let main = try Configuration.load(directory: dir.path).main
        let checked = WritableDirectories(main)
        #expect(checked.directories.map(\.key) == ["SpoolDir", "BackupStorage", "MetricsFile's directory"])
        #expect(checked.problems().isEmpty, "missing ones can be made: \(checked.problems())")
    }
}
