import Foundation
import Testing

@testable import BackupVMCore

/// The worker daemon, the cron tick and the locator against the lab's hypervisors.
@Suite("lab: daemon, limits, migration, unreachable hosts", .tags(.lab), .serialized)
struct LabDaemonTests {
    let tmp = TempDir("labd")

    /// started/finished/host of every finished job, from the result records in done/.
    func intervals(_ spool: Spool) -> [(vm: String, host: String, start: Date, end: Date)] {
        spool.names(in: .done).compactMap { name in
            guard case .success(let job)? = spool.read(name, in: .done),
                let s = job.resultFields["started"].flatMap(Timestamps.parseISO),
                let e = job.resultFields["finished"].flatMap(Timestamps.parseISO),
                let h = job.resultFields["host"]
            else { return nil }
            return (job.request.vm, h, s, e)
        }
    }

    static func maxOverlap(_ spans: [(start: Date, end: Date)]) -> Int {
        var events: [(Date, Int)] = []
        for s in spans {
            events.append((s.start, 1))
            events.append((s.end, -1))
        }
        events.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        var current = 0
        var best = 0
        for (_, d) in events {
            current += d
            best = max(best, current)
        }
        return best
    }

    @Test("daemon: 4 VMs on kvm1 + 2 on kvm2, MaxBackupThreads=3, ForHost=2: limits held, kvm2 not blocked")
    func limitsUnderTheDaemon() throws {
        let lab = try Lab.require()
        let a = (1...4).map { "lim-a\($0)" }
        let b = (1...2).map { "lim-b\($0)" }
        for vm in a + b { lab.removeGuest(vm) }
        defer { for vm in a + b { lab.removeGuest(vm) } }
        for vm in a { try lab.makeGuest("kvm1", vm, raw: 8, start: true) }
        for vm in b { try lab.makeGuest("kvm2", vm, raw: 8, start: true) }
        let config = lab.config(tmp, schedule: (a + b).map { "\($0) * 2" }.joined(separator: "\n"))
        let spool = Spool(root: config + "/spool")
        // Queue kvm1's four first, then kvm2's two.
        for vm in a + b {
            #expect(try backupVM(config, ["enqueue", vm]).status == 0)
            usleep(20_000)
        }
        let daemon = try ChildProcess(Paths.binary("backup_vmd"), ["--config-dir", config, "--console"])
        defer { daemon.stop() }
        let finished = eventually(timeout: 600) { spool.names(in: .done).count + spool.names(in: .failed).count == 6 }
        #expect(finished, "\(daemon.standardError.suffix(2000))")
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 60))
        #expect(
            spool.names(in: .failed).isEmpty,
            "\(spool.names(in: .failed).map { (try? String(contentsOfFile: spool.layout.failed + "/" + $0, encoding: .utf8)) ?? "" })"
        )
        let spans = intervals(spool)
        #expect(spans.count == 6)
        let global = Self.maxOverlap(spans.map { ($0.start, $0.end) })
        let kvm1 = Self.maxOverlap(spans.filter { $0.host == "kvm1" }.map { ($0.start, $0.end) })
        let kvm2 = Self.maxOverlap(spans.filter { $0.host == "kvm2" }.map { ($0.start, $0.end) })
        #expect(global <= 3 && kvm1 <= 2 && kvm2 <= 2, "global \(global), kvm1 \(kvm1), kvm2 \(kvm2)")
        #expect(global >= 2, "jobs really ran in parallel (\(global))")
        // kvm1's third and fourth jobs had to wait for a kvm1 slot; kvm2's first job, queued behind
        // them, must not have waited with them.
        let kvm1Starts = spans.filter { $0.host == "kvm1" }.map(\.start).sorted()
        let firstKvm2Start = try #require(spans.filter { $0.host == "kvm2" }.map(\.start).min())
        try #require(kvm1Starts.count >= 3, "kvm1 ran its four jobs: \(spans)")
        #expect(firstKvm2Start < kvm1Starts[2], "kvm2's job started while kvm1's waited")
        for vm in a + b {
            let host = a.contains(vm) ? "kvm1" : "kvm2"
            #expect(try lab.state(host, vm) == "running", "\(vm) running again")
        }
    }

    @Test("migration: found on kvm2 after moving; running wins over a stale definition; equal definitions are an error")
    func migration() throws {
        let lab = try Lab.require()
        let vm = "mig1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 8)
        let config = lab.config(tmp, schedule: "\(vm) * 5")
        let catalog = BackupCatalog(storage: tmp.path + "/storage")
        #expect(try backupVM(config, [vm]).status == 0)
        #expect(try Manifest.read(backupDirectory: try #require(catalog.newestBackup(of: vm)).path).host == "kvm1")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm1", vm) == 2 })

        // "Migrate": undefine on kvm1, move disk and definition to kvm2, start there.
        let xml = try lab.ssh("kvm1", "virsh dumpxml --inactive \(vm)")
        try lab.ssh("kvm1", "virsh destroy \(vm); virsh undefine \(vm)")
        let src = lab.images("kvm1") + "/\(vm)-vda.raw"
        let dst = lab.images("kvm2") + "/\(vm)-vda.raw"
        try FileManager.default.moveItem(atPath: src, toPath: dst)
        tmp.write("mig.xml", xml)
        try lab.ssh("kvm2", "virsh define /dev/stdin < \(tmp.path)/mig.xml && virsh start \(vm)")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", vm) >= 1 })
        let moved = try backupVM(config, [vm])
        #expect(moved.status == 0, "\(moved.err)")
        #expect(
            try Manifest.read(backupDirectory: try #require(catalog.newestBackup(of: vm)).path).host == "kvm2",
            "found on kvm2")

        // A stale (shut off) definition left on kvm1 does not matter while it runs on kvm2.
        try lab.ssh("kvm1", "virsh define /dev/stdin < \(tmp.path)/mig.xml")
        #expect(eventually(timeout: 90) { lab.readyCount("kvm2", vm) >= 2 })
        let again = try backupVM(config, [vm])
        #expect(again.status == 0, "\(again.err)")
        #expect(try Manifest.read(backupDirectory: try #require(catalog.newestBackup(of: vm)).path).host == "kvm2")

        // Off on both with definitions of the same age: a clear error, nothing backed up twice.
        try lab.ssh("kvm2", "virsh destroy \(vm)")
        try lab.ssh("kvm1", "touch -d '2026-01-01 00:00:00' /etc/libvirt/qemu/\(vm).xml")
        try lab.ssh("kvm2", "touch -d '2026-01-01 00:00:00' /etc/libvirt/qemu/\(vm).xml")
        let count = catalog.backups(of: vm).count
        let ambiguous = try backupVM(config, [vm])
        #expect(ambiguous.status == 1)
        #expect(
            ambiguous.err.contains("defined (shut off) on kvm1 and kvm2") && ambiguous.err.contains("virsh undefine"),
            "\(ambiguous.err)")
        #expect(catalog.backups(of: vm).count == count)
        // The newer definition wins (documented rule), with a warning.
        try lab.ssh("kvm2", "touch /etc/libvirt/qemu/\(vm).xml")
        let newest = try backupVM(config, [vm])
        #expect(newest.status == 0, "\(newest.err)")
        #expect(newest.err.contains("backing up the newest definition, on kvm2"), "\(newest.err)")
    }

    @Test("a VM on no host fails naming the hosts tried; an unreachable host does not stop the others")
    func unreachableHost() throws {
        let lab = try Lab.require()
        let vm = "reach1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        try lab.makeGuest("kvm1", vm, raw: 8)
        // kvm3 is in HostServers but nothing answers there; kvm4 answers with a host key nobody knows.
        // (First match wins in ssh_config: the extra hosts come before the lab's `Host *`; an Include
        // inside a Host block applies to that block only, hence `Host *` before it.)
        tmp.write(
            "ssh_config",
            """
            Host kvm3
              HostName 127.0.0.13
              Port 1
            Host kvm4
              HostName 127.0.0.11
              UserKnownHostsFile /dev/null
            Host *
            Include \(lab.sshConfig)

            """)
        let config = lab.config(
            tmp, hosts: "kvm1 kvm2 kvm3", schedule: "\(vm) * 2\nghost1 * 2",
            sshConfig: tmp.path + "/ssh_config")
        let ok = try backupVM(config, [vm])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.err.contains("unreachable while locating \(vm): kvm3"), "\(ok.err)")
        let ghost = try backupVM(config, ["ghost1"])
        #expect(ghost.status == 1)
        #expect(
            ghost.err.contains(
                "ghost1 was found on no host (tried kvm1: not defined; kvm2: not defined; kvm3: cannot reach kvm3 over ssh"
            ), "\(ghost.err)")

        // doctor: the good hosts pass, the unreachable one and one with an unknown host key fail,
        // each with what to do.
        tmp.write(
            "backup_vm.d/backup_vm.conf",
            (try String(contentsOfFile: config + "/backup_vm.d/backup_vm.conf", encoding: .utf8))
                .replacingOccurrences(of: "HostServers=\"kvm1 kvm2 kvm3\"", with: "HostServers=\"kvm1 kvm2 kvm3 kvm4\"")
        )
        let doctor = try backupVM(config, ["doctor"])
        #expect(doctor.status == 1)
        #expect(doctor.out.contains("ok   host kvm1: ssh as root with a verified host key"), "\(doctor.out)")
        #expect(doctor.out.contains("ok   host kvm2: libvirt Running against daemon"), "\(doctor.out)")
        #expect(doctor.out.contains("ok   host kvm1: live backups possible (libvirt 9.0.0, QEMU 7.2"), "\(doctor.out)")
        #expect(doctor.out.contains("FAIL host kvm3: cannot reach kvm3 over ssh"), "\(doctor.out)")
        #expect(doctor.out.contains("FAIL host kvm4") && doctor.out.contains("ssh-keyscan -H kvm4"), "\(doctor.out)")
    }

    // A daemon SIGKILLed mid-job is covered by PipelineRecoveryTests (every stage boundary, through the
    // seam), SpoolStressTests (a real SIGKILLed worker process) and the LVM tier (a real backup_vmd
    // SIGKILLed during the copy from a real snapshot).
}
