import Foundation
import Testing

@testable import BackupVMCore

/// The live backup job's remote scripts run for real (bash, mkdir, chown, stat) through a stand-in
/// ssh against a `virsh` stub that answers like libvirt 9.0 (docs/live-backup-spike.md): the paths
/// that real libvirt does not take on demand — a job someone else started, a begin that fails while
/// the file systems are frozen and then cannot be thawed, an abort that does not end the job.
@Suite("live backup scripts against a virsh stub", .tags(.spool))
struct LiveScriptTests {
    let dir = TempDir("live-script")

    /// A stand-in host whose `virsh` runs `action` (bash, `$1` the subcommand), with a qemu pid file
    /// for web01, and the job's directory below a working path every user may pass through.
    func host(_ action: String, sandbox given: SandboxHost? = nil) throws -> (SandboxHost, VirshBackupJob, String) {
        let sandbox = try given ?? SandboxHost(dir, stubs: ["virsh": action])
        let run = dir.path + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try "1\n".write(toFile: run + "/web01.pid", atomically: true, encoding: .utf8)
        // The ancestors of the working path must be searchable by the qemu user: x is added where it
        // is missing, nothing else is changed (never /tmp's own mode).
        var path = dir.path
        while path != "/" {
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o001 == 0 { chmod(path, (st.st_mode & 0o7777) | 0o011) }
            path = (path as NSString).deletingLastPathComponent
        }
        let live = dir.path + "/work/web01/.20261128T000000Z.live"
        // The disk: 2 MiB written (allocated), in a 4 MiB raw file.
        let fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = [UInt8](repeating: 0x5a, count: 2 << 20).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        ftruncate(fd, 4 << 20)
        fsync(fd)
        close(fd)
        return (sandbox, VirshBackupJob(host: sandbox.host, qemuRunDirectory: run), live)
    }

    var disk: String { dir.path + "/vda.raw" }

    /// What a raw file's scratch may grow to: its allocated bytes (2 MiB written of 4), 1/4096 of its
    /// size and 1 MiB.
    func worstCase(of file: String) throws -> Int64 {
        var st = stat()
        guard stat(file, &st) == 0 else { throw SystemError("stat", path: file) }
        #expect(Int64(st.st_blocks) * 512 < Int64(st.st_size), "sparse")
        return min(Int64(st.st_blocks) * 512, Int64(st.st_size)) + Int64(st.st_size) / 4096 + Int64(1 << 20)
    }

    /// The job of web01 on its raw disk vda (vdb excluded), frozen for at most `freezeTimeout` s.
    func request(_ live: String, freezeTimeout: Int = 10, disks: [DomainDisk]? = nil) -> LiveJobRequest {
        LiveJobRequest(
            vm: "web01", directory: live,
            disks: disks ?? [DomainDisk(target: "vda", kind: .file, format: .raw, source: disk)], excluded: ["vdb"],
            quiesce: true, freezeTimeout: freezeTimeout)
    }

    /// libvirt 9.0's answer to backup-dumpxml when no job runs.
    static let noJob = "echo 'error: Domain backup job id not found: no domain backup job present' >&2; exit 1"

    func calls(_ sandbox: SandboxHost, _ subcommand: String) -> Int {
        sandbox.loggedArguments.enumerated().filter { i, line in
            line == "== virsh" && i + 1 < sandbox.loggedArguments.count && sandbox.loggedArguments[i + 1] == subcommand
        }.count
    }

    @Test("no agent: sysrq sync, begin with the job's XML on stdin, exports from backup-dumpxml; directory 0700")
    func beginWithoutAgent() throws {
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) [ -e began ] || { \(Self.noJob); }
                echo "<domainbackup mode='pull'><disks><disk name='vda' backup='yes' exportname='vda'/></disks></domainbackup>";;
              domfsfreeze) echo 'error: argument unsupported: QEMU guest agent is not configured' >&2; exit 1;;
              backup-begin) cat > began;;
            esac
            """)
        let begin = try job.begin(request(live))
        #expect(begin.outcome == .begun(LiveJob(directory: live, exports: ["vda": "vda"])))
        guard case .unavailable(let why, synced: true)? = begin.quiesce else {
            Issue.record("expected no agent and a sysrq sync: \(String(describing: begin.quiesce))")
            return
        }
        #expect(why.contains("not configured"))
        #expect(calls(sandbox, "send-key") == 1 && calls(sandbox, "domfsthaw") == 0)
        let xml = try String(contentsOfFile: sandbox.sandbox + "/began", encoding: .utf8)
        #expect(xml == VirshBackupJob.backupXML(directory: live, targets: ["vda"], excluded: ["vdb"]))
        let mode = (try FileManager.default.attributesOfItem(atPath: live)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o700)
    }

    @Test("a job someone else started: reported with its socket; nothing frozen, nothing begun")
    func foreignJobIsReported() throws {
        let (sandbox, job, live) = try host(
            """
            [ "$1" = backup-dumpxml ] && echo "<domainbackup mode='pull'><server transport='unix' socket='/elsewhere/x.sock'/></domainbackup>"
            exit 0
            """)
        let begin = try job.begin(request(live))
        #expect(begin.outcome == .running(socket: "/elsewhere/x.sock") && begin.quiesce == nil)
        #expect(calls(sandbox, "domfsfreeze") == 0 && calls(sandbox, "backup-begin") == 0)
    }

    @Test("frozen, then the begin fails and the thaw too: told as such; the directory is removed")
    func beginFailsWhileFrozen() throws {
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) \(Self.noJob);;
              domfsfreeze) echo 'Froze 1 filesystem(s)';;
              backup-begin) echo 'error: internal error: boom' >&2; exit 1;;
              domfsthaw) echo 'error: Guest agent is not responding' >&2; exit 1;;
            esac
            """)
        #expect {
            _ = try job.begin(request(live))
        } throws: { error in
            guard case LiveBackupError.thawFailed(_, _, let cause) = error else { return false }
            return cause.contains("boom") && !cause.contains("BVM_")
        }
        #expect(calls(sandbox, "domfsthaw") == 2, "the EXIT trap thawed, and tried again once")
        #expect(!FileManager.default.fileExists(atPath: live))
    }

    @Test("frozen and thawed around a good begin: the frozen time is measured")
    func frozenAndThawed() throws {
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) [ -e began ] || { \(Self.noJob); }; echo "<disk name='vda' exportname='vda'>";;
              domfsfreeze) echo 'Froze 2 filesystem(s)';;
              backup-begin) cat > began;;
              domfsthaw) echo 'Thawed 2 filesystem(s)';;
            esac
            """)
        let begin = try job.begin(request(live))
        guard case .frozen(count: 2, let ms?)? = begin.quiesce else {
            Issue.record("expected 2 file systems frozen and thawed: \(String(describing: begin.quiesce))")
            return
        }
        #expect(ms >= 0 && ms < 60_000 && !begin.thawFailed)
        #expect(calls(sandbox, "domfsthaw") == 1, "thawed once, before backup-dumpxml; the EXIT trap does nothing")
    }

    @Test("end: our job is aborted, someone else's is not; a job that stays is an error; the directory goes")
    func end() throws {
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) [ -e socket ] || { \(Self.noJob); }; echo "<server transport='unix' socket='$(cat socket)'/>";;
              domjobabort) [ -e stubborn ] || rm -f socket;;
            esac
            """)
        let socketFile = sandbox.sandbox + "/socket"
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try LiveJob.socket(in: live).write(toFile: socketFile, atomically: true, encoding: .utf8)
        try job.end(vm: "web01", directory: live)
        #expect(calls(sandbox, "domjobabort") == 1 && !FileManager.default.fileExists(atPath: live))

        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try "/elsewhere/x.sock".write(toFile: socketFile, atomically: true, encoding: .utf8)
        try job.end(vm: "web01", directory: live)
        #expect(calls(sandbox, "domjobabort") == 1, "someone else's job is not aborted")
        #expect(!FileManager.default.fileExists(atPath: live))

        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try LiveJob.socket(in: live).write(toFile: socketFile, atomically: true, encoding: .utf8)
        try "".write(toFile: sandbox.sandbox + "/stubborn", atomically: true, encoding: .utf8)
        #expect(throws: LiveBackupError.jobStillRunning(vm: "web01", host: "kvm1", directory: live)) {
            try job.end(vm: "web01", directory: live)
        }
        #expect(FileManager.default.fileExists(atPath: live), "kept while the job may still use it")
    }

    @Test("a working path that libvirt would spell differently is refused before anything runs")
    func unplainDirectory() throws {
        let (sandbox, job, _) = try host("exit 0")
        let odd = dir.path + "/it's/.20261128T000000Z.live"
        #expect(throws: LiveBackupError.unplainDirectory(path: odd)) {
            _ = try job.begin(request(odd))
        }
        #expect(calls(sandbox, "backup-dumpxml") == 0)
    }

    /// A `df` that reports `available` bytes free on every file system (the real one has far more).
    static func df(available: Int64) -> String {
        "echo 'Filesystem 1-blocks Used Available Capacity Mounted on'; echo \"work 99999999999 0 \(available) 1% /work\""
    }

    static let begins = """
        case "$1" in
          backup-dumpxml) [ -e began ] || { \(noJob); }; echo "<disk name='vda' exportname='vda'>";;
          domfsfreeze) echo 'Froze 1 filesystem(s)';;
          backup-begin) cat > began;;
          domfsthaw) echo 'Thawed 1 filesystem(s)';;
        esac
        """

    @Test(
        "scratch room: a file system without room for the disks' worst case is refused before anything is frozen or begun"
    )
    func noScratchRoom() throws {
        let sandbox = try SandboxHost(dir, stubs: ["virsh": Self.begins, "df": Self.df(available: 100 << 20)])
        let (_, job, live) = try host(Self.begins, sandbox: sandbox)
        // Another live job of ours under the same WorkPath may still need 50 MiB (its reservation).
        let other = dir.path + "/work/web02/.20261128T000000Z.live"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try "52428800\n".write(toFile: other + "/need", atomically: true, encoding: .utf8)
        let need = try worstCase(of: disk)
        #expect {
            _ = try job.begin(request(live))
        } throws: { error in
            guard case LiveBackupError.noScratchRoom(_, _, let d, let available, let needed, let others) = error else {
                return false
            }
            return d == live && available == 100 << 20 && needed == need && others > 49 << 20
                && "\(error)".contains("WorkPath")
        }
        #expect(calls(sandbox, "domfsfreeze") == 0 && calls(sandbox, "backup-begin") == 0)
        #expect(!FileManager.default.fileExists(atPath: live))
    }

    @Test("scratch room: with room the job begins and leaves its worst case for the next job's check")
    func scratchReserved() throws {
        let (_, job, live) = try host(Self.begins)
        let begin = try job.begin(request(live))
        let need = try worstCase(of: disk)
        #expect(begin.scratch?.needed == need && (begin.scratch?.available ?? 0) > ScratchRoom.margin)
        let reserved = try String(contentsOfFile: live + "/need", encoding: .utf8)
        #expect(reserved == "\(need)\n")
    }

    @Test("scratch room: a qcow2 disk counts its allocated bytes and its virtual size from the image's header")
    func qcow2Need() throws {
        let image = dir.path + "/vdb.qcow2"
        try runTool("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"])
        let (_, job, live) = try host(Self.begins)
        let disks = [DomainDisk(target: "vda", kind: .file, format: .qcow2, source: image)]
        var st = stat()
        #expect(stat(image, &st) == 0)
        let begin = try job.begin(request(live, disks: disks))
        #expect(begin.scratch?.needed == Int64(st.st_blocks) * 512 + Int64(64 << 20) / 4096 + Int64(1 << 20))
    }

    @Test(
        "FreezeTimeout: a begin that hangs while the file systems are frozen is not waited for; they are thawed first")
    func freezeTimeout() throws {
        // backup-begin waits 20 s (libvirt's state lock held by someone else), then succeeds.
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) \(Self.noJob);;
              domfsfreeze) echo 'Froze 1 filesystem(s)';;
              backup-begin) trap 'kill $z; exit 143' TERM; sleep 20 & z=$!; wait $z; touch began;;
              domfsthaw) [ -e began ] && echo late > thaw-order || echo first > thaw-order; echo 'Thawed 1 filesystem(s)';;
            esac
            """)
        #expect(throws: LiveBackupError.freezeTimeout(vm: "web01", host: "kvm1", seconds: 1)) {
            _ = try job.begin(request(live, freezeTimeout: 1))
        }
        let order = try String(contentsOfFile: sandbox.sandbox + "/thaw-order", encoding: .utf8)
        #expect(order == "first\n", "thawed before the begin ended")
        #expect(!FileManager.default.fileExists(atPath: live), "a begin that libvirt completes later has no directory")
    }

    @Test("FreezeTimeout: a freeze that hangs (agent stuck) is cut, and the file systems thawed all the same")
    func freezeHangs() throws {
        let (sandbox, job, live) = try host(
            """
            case "$1" in
              backup-dumpxml) \(Self.noJob);;
              domfsfreeze) sleep 20;;
              domfsthaw) echo 'Thawed 1 filesystem(s)';;
            esac
            """)
        #expect(throws: LiveBackupError.freezeTimeout(vm: "web01", host: "kvm1", seconds: 1)) {
            _ = try job.begin(request(live, freezeTimeout: 1))
        }
        #expect(calls(sandbox, "domfsthaw") == 1 && calls(sandbox, "backup-begin") == 0)
    }

    @Test("libvirtd away: the end keeps the directory and fails (no job is taken for gone); the begin does not begin")
    func libvirtdAway() throws {
        let (sandbox, job, live) = try host(
            """
            echo 'error: failed to connect to the hypervisor' >&2
            echo "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory" >&2
            exit 1
            """)
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        #expect {
            try job.end(vm: "web01", directory: live)
        } throws: { "\($0)".contains("failed to connect to the hypervisor") }
        #expect(FileManager.default.fileExists(atPath: live), "kept: the job may still run")
        #expect(calls(sandbox, "domjobabort") == 0)
        #expect {
            _ = try job.begin(request(dir.path + "/work/web01/.20261128T000001Z.live"))
        } throws: { "\($0)".contains("failed to connect to the hypervisor") }
        #expect(calls(sandbox, "backup-begin") == 0 && calls(sandbox, "send-key") == 0)
    }

    @Test("the watch's reading: room left, what the jobs may still need (reservation minus use), the paused guest")
    func scratchReading() throws {
        let sandbox = try SandboxHost(
            dir,
            stubs: [
                "virsh": "case \"$*\" in *'domstate --reason web01'*) echo 'paused (I/O error)';; esac",
                "df": Self.df(available: 300 << 20),
            ])
        let (_, job, live) = try host("", sandbox: sandbox)
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try "104857600\n".write(toFile: live + "/need", atomically: true, encoding: .utf8)
        try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: live + "/vda.scratch"))
        let reading = try job.scratch(vm: "web01", directory: live)
        #expect(reading.available == 300 << 20)
        #expect(reading.used >= 1 << 20 && reading.outstanding == (100 << 20) - reading.used)
        #expect(reading.condition == DomainCondition(state: .paused, reason: "I/O error"))
        #expect(reading.verdict == .paused(DomainCondition(state: .paused, reason: "I/O error")))
    }
}
