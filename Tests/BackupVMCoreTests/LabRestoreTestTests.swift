import Foundation
import Testing

@testable import BackupVMCore

/// `backup_vm restore-test` on real libvirt: a cold backup of a lab guest booted as a throw-away copy
/// on the other hypervisor until its console says it is up, recorded and removed; a damaged backup
/// refused before anything is made; a copy that never shows life failed by the timeout, and removed.
@Suite("lab: restore tests", .tags(.lab), .serialized)
struct LabRestoreTestTests {
    let tmp = TempDir("lab-restoretest")

    func remains(_ lab: Lab, _ host: String, vm: String) throws -> String {
        try lab.ssh(
            host,
            "virsh dominfo \(vm)-restoretest >/dev/null 2>&1 && echo domain; "
                + "[ -e /var/lib/backup_vm/\(vm)/restoretest ] && echo directory; true"
        ).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// RestoreTestEveryDays=1 and a last test two days old: the cron tick queues a restore-test job
    /// and the daemon runs it, under the same slots as backups.
    func scheduled(_ lab: Lab, vm: String, config: String, ref: BackupRef) throws {
        tmp.write(
            "vmsnapshot.d/\(vm)",
            "Mode=cold\nRestoreTestReady=LAB-GUEST-READY\nRestoreTestTimeout=180\nRestoreTestEveryDays=1\n")
        var last = try #require(BackupVerifier.lastRecord(ref)?.restoreTest)
        last.tested = Timestamps.iso(Date().addingTimeInterval(-2 * 86400))
        BackupVerifier.record(last, for: ref)
        let tick = try runTool(Paths.binary("vm_backup_sheduler"), ["--config-dir", config, "--verbose"])
        #expect(tick.status == 0, "\(tick.err)")
        let spool = Spool(root: config + "/spool")
        let queued = spool.names(in: .new)
        #expect(queued.count == 1 && spool.peek(queued[0])?.request.kind == .restoreTest, "\(tick.out)")
        // Finished restore tests (the manual backup left a record in done/ too).
        func tests(_ state: JobState) -> [String] {
            spool.names(in: state).filter {
                if case .success(let f)? = spool.read($0, in: state) { return f.request.kind == .restoreTest }
                return false
            }
        }
        let daemon = try ChildProcess(Paths.binary("backup_vmd"), ["--config-dir", config, "--console"])
        defer { daemon.stop() }
        #expect(eventually(timeout: 300) { tests(.done).count + tests(.failed).count >= 1 })
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 60))
        #expect(tests(.done).count == 1, "the scheduled test passed: \(daemon.standardError.suffix(3000))")
        let record = try #require(BackupVerifier.lastRecord(ref)?.restoreTest)
        #expect(
            record.ok && Date().timeIntervalSince(Timestamps.parseISO(record.tested) ?? .distantPast) < 600,
            "\(record) \(daemon.standardError.suffix(3000))")
        #expect(try remains(lab, "kvm1", vm: vm) == "")
    }

    @Test("a backup boots as a throw-away copy, is recorded and removed; damaged or silent ones fail clearly")
    func restoreTest() throws {
        let lab = try Lab.require()
        let vm = "rt1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        let disks = try lab.makeGuest("kvm1", vm, raw: 16, qcow2: 16)
        let profile = "Mode=cold\nRestoreTestReady=LAB-GUEST-READY\nRestoreTestTimeout=180"
        let config = lab.config(tmp, schedule: "\(vm) * 3", extraMain: "BackupHours=0-24", profiles: [vm: profile])
        let backup = try backupVM(config, [vm])
        try #require(backup.status == 0, "\(backup.err)")
        let ref = try #require(BackupCatalog(storage: tmp.path + "/storage").newestBackup(of: vm))

        let test = try backupVM(config, ["restore-test", vm, "--host", "kvm2"])
        #expect(test.status == 0, "\(test.err)")
        #expect(
            test.out.contains("restore test of \(vm) backup \(ref.id) on kvm2: booted (console after"), "\(test.out)")
        let record = try #require(BackupVerifier.lastRecord(ref)?.restoreTest)
        #expect(record.ok && record.host == "kvm2" && record.signal == "console" && (record.bootSeconds ?? 0) > 0)
        #expect(try remains(lab, "kvm2", vm: vm) == "", "no domain, no directory left on kvm2")
        #expect(try lab.state("kvm1", vm) == "running", "the original runs on")
        #expect(try sha256(ofFile: disks["vda"]!.path) == disks["vda"]!.sha256, "and its disks are untouched")
        let list = try backupVM(config, ["list", vm])
        #expect(list.out.contains(", booted "), "\(list.out)")

        // A copy that never prints the line: failed by the timeout, removed all the same.
        tmp.write("vmsnapshot.d/\(vm)", "Mode=cold\nRestoreTestReady=NEVER-PRINTED\nRestoreTestTimeout=10\n")
        let silent = try backupVM(config, ["restore-test", vm])
        #expect(silent.status == 1, "\(silent.out)")
        #expect(
            silent.err.contains("FAILED: no console line matched RestoreTestReady 'NEVER-PRINTED' within 10 s"),
            "\(silent.err)")
        #expect(try remains(lab, "kvm1", vm: vm) == "")
        #expect(BackupVerifier.lastRecord(ref)?.restoreTest?.ok == false)

        try scheduled(lab, vm: vm, config: config, ref: ref)

        // Somebody's domain with the copy's name (no marker of ours): refused, left as it was.
        let stranger = "\(vm)-restoretest"
        lab.removeGuest(stranger)
        defer { lab.removeGuest(stranger) }
        try lab.makeGuest("kvm1", stranger, raw: 8, start: false)
        let refused = try backupVM(config, ["restore-test", vm])
        #expect(refused.status == 1)
        #expect(refused.err.contains("is not a restore test's copy: not touched"), "\(refused.err)")
        #expect(try lab.state("kvm1", stranger) == "shut off", "the stranger's domain is still defined")
        lab.removeGuest(stranger)

        // One flipped byte in the stored disk: refused before anything is written or defined.
        let manifest = try Manifest.read(backupDirectory: ref.path)
        let file = ref.path + "/" + manifest.disks[0].file
        let handle = try #require(FileHandle(forUpdatingAtPath: file))
        try handle.seek(toOffset: 100)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data([byte ^ 0xff]))
        try handle.close()
        let damaged = try backupVM(config, ["restore-test", vm])
        #expect(damaged.status == 1)
        #expect(damaged.err.contains(manifest.disks[0].file), "the damaged file is named: \(damaged.err)")
        #expect(try remains(lab, "kvm1", vm: vm) == "")
    }
}
