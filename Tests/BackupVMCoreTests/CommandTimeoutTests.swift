import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9, finding 14: every remote step has a limit, and a hung one is ended by pid, on this
/// side and on the hypervisor's, instead of holding a VM and its slots forever. Real processes
/// (sleep standing in for a hung virsh, dd or ssh); no test asserts how long anything took, only what
/// ended and what is still alive when the call returns.
@Suite("command timeouts", .tags(.spool))
struct CommandTimeoutTests {
    let dir = TempDir("timeout")

    /// The pid a script wrote to `file` (it writes `$$` before it hangs).
    func pid(in file: String) throws -> pid_t {
        for _ in 0..<500 {
            if let text = try? String(contentsOfFile: dir.path + "/" + file, encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return pid
            }
            usleep(10_000)
        }
        throw HarnessError(description: "no pid in \(file)")
    }

    /// Alive and not a zombie (an orphan is reaped by whoever reaps orphans here, in its own time).
    func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// Stops a process the test started (and its survivors), by pid.
    func stop(_ pid: pid_t) { kill(pid, SIGKILL) }

    @Test("a command past its total time is ended and reaped, with .timedOut")
    func totalTimeout() throws {
        let argv = ["/bin/sh", "-c", "echo $$ > '\(dir.path)/p'; exec sleep 300"]
        #expect(throws: ProcessError.cut(program: "/bin/sh", .timedOut(seconds: 1), stderr: "")) {
            try ProcessRunner.run(argv, limits: CommandLimits(total: 1))
        }
        let child = try pid(in: "p")
        #expect(!isAlive(child), "the hung command was killed and reaped")
    }

    @Test("a stream that stops moving is ended (.stalled); one that keeps moving is not")
    func stall() throws {
        let hung = ["/bin/sh", "-c", "echo $$ > '\(dir.path)/p'; echo first; exec sleep 300"]
        #expect(throws: ProcessError.cut(program: "/bin/sh", .stalled(seconds: 1), stderr: "")) {
            try ProcessRunner.run(hung, limits: CommandLimits(stall: 1))
        }
        #expect(!isAlive(try pid(in: "p")))
        // Longer in all than the stall limit, but never silent for that long.
        let moving = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i; sleep 0.25; done"]
        let outcome = try ProcessRunner.run(moving, limits: CommandLimits(stall: 2))
        #expect(outcome.status == 0 && outcome.stdout.hasSuffix("12\n"))
    }

    @Test("reading stdin counts as progress; a child that stops reading it is ended")
    func stdinProgress() throws {
        let input = dir.path + "/in"
        try Data(count: 16).write(to: URL(fileURLWithPath: input))
        let fd = open(input, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        // Reads one byte every 0.25 s: 4 s in all, silent on stdout, under a stall limit of 2 s.
        let reader = ["/bin/sh", "-c", "while [ -n \"$(dd bs=1 count=1 status=none | od -An)\" ]; do sleep 0.25; done"]
        let (status, _) = try ProcessRunner.stream(reader, stdin: fd, limits: CommandLimits(stall: 2)) { _ in true }
        #expect(status == 0)
        lseek(fd, 0, SEEK_SET)
        #expect(throws: ProcessError.self) {
            try ProcessRunner.stream(["/bin/sleep", "300"], stdin: fd, limits: CommandLimits(stall: 1)) { _ in true }
        }
    }

    @Test("abort ends a running command")
    func abortEnds() throws {
        let abort = AbortFlag()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { abort.raise() }
        let argv = ["/bin/sh", "-c", "echo $$ > '\(dir.path)/p'; exec sleep 300"]
        #expect(throws: ProcessError.cut(program: "/bin/sh", .aborted, stderr: "")) {
            try ProcessRunner.run(argv, limits: CommandLimits(abort: abort))
        }
        #expect(!isAlive(try pid(in: "p")))
    }

    /// With a shared ssh connection, the master (another process) holds the client's stderr until the
    /// remote side lets go; a hung remote never does. Modelled by a grandchild holding stderr.
    @Test("a cut command returns although another process still holds its stderr")
    func heldStderr() throws {
        let argv = [
            "/bin/sh", "-c", "sleep 300 >/dev/null </dev/null & echo $! > '\(dir.path)/holder'; exec sleep 300",
        ]
        #expect(throws: ProcessError.self) { try ProcessRunner.run(argv, limits: CommandLimits(total: 1)) }
        let holder = try pid(in: "holder")
        #expect(isAlive(holder), "returned while stderr was still held (the old code waited for its end)")
        stop(holder)
    }

    @Test("a hung virsh on the hypervisor is ended there (remote timeout) and reported as a timeout")
    func remoteTimeout() throws {
        let sandbox = try SandboxHost(
            dir, stubs: ["virsh": "echo $$ > '\(dir.path)/virsh.pid'; exec sleep 300"],
            timeouts: RemoteTimeouts(command: 1, grace: 30))
        #expect(throws: RemoteError.timedOut(host: "kvm1", what: "virsh domstate web1", cut: .timedOut(seconds: 1))) {
            _ = try Virsh(host: sandbox.host).state("web1")
        }
        let virsh = try pid(in: "virsh.pid")
        // `timeout -k 10` sends SIGTERM to the script's process group, which sleep obeys. (Not asserted
        // at the instant of return: the signal is delivered by another process.)
        #expect(eventually(timeout: 30) { !isAlive(virsh) }, "the hypervisor's own timeout ended the hung virsh")
        if isAlive(virsh) { stop(virsh) }
        let message = RemoteError.timedOut(host: "kvm1", what: "virsh domstate web1", cut: .timedOut(seconds: 1))
            .description
        #expect(message.contains("kvm1") && message.contains("timeout"))
    }

    @Test("a virsh define that hangs on the hypervisor is ended there after CommandTimeout, not StallTimeout")
    func defineTimesOut() throws {
        let sandbox = try SandboxHost(
            dir, stubs: ["virsh": "echo $$ > '\(dir.path)/virsh.pid'; exec sleep 300"],
            timeouts: RemoteTimeouts(command: 1, stall: 600, grace: 30))
        #expect(throws: RemoteError.timedOut(host: "kvm1", what: "virsh define web1", cut: .timedOut(seconds: 1))) {
            try Virsh(host: sandbox.host).define(xml: "<domain><name>web1</name></domain>", what: "virsh define web1")
        }
        let virsh = try pid(in: "virsh.pid")
        #expect(eventually(timeout: 30) { !isAlive(virsh) }, "the hypervisor's own timeout ended the hung virsh")
        if isAlive(virsh) { stop(virsh) }
    }

    @Test("a host that stops answering (ssh hangs) is given up after the grace")
    func silentHost() throws {
        let sandbox = try SandboxHost(dir, timeouts: RemoteTimeouts(command: 1, grace: 1))
        try SandboxHost.executable(dir.path + "/ssh", "#!/bin/bash\necho $$ > '\(dir.path)/ssh.pid'\nexec sleep 300\n")
        #expect(throws: RemoteError.timedOut(host: "kvm1", what: "virsh start web1", cut: .timedOut(seconds: 2))) {
            try Virsh(host: sandbox.host).start("web1")
        }
        #expect(!isAlive(try pid(in: "ssh.pid")), "the local ssh was killed")
    }

    @Test("a disk stream whose hypervisor side stops sending is ended after StallTimeout, and says so")
    func stalledDiskStream() throws {
        // dd sends 64 KiB, then hangs like a disk in D state (the rest of the pipeline keeps waiting).
        let sandbox = try SandboxHost(
            dir, stubs: ["dd": "echo $$ > '\(dir.path)/dd.pid'; head -c 65536 /dev/urandom; exec sleep 300"],
            timeouts: RemoteTimeouts(stall: 2))
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: sandbox.sandbox + "/disk"))
        let stream = DiskStream(host: sandbox.host, compression: .lzop, level: 1)
        let what = "reading \(sandbox.sandbox)/disk"
        #expect(throws: RemoteError.timedOut(host: "kvm1", what: what, cut: .stalled(seconds: 2))) {
            _ = try stream.copy(
                source: sandbox.sandbox + "/disk", workDir: sandbox.sandbox + "/work", stageFile: nil,
                to: dir.path + "/stored.lzo", abort: AbortFlag())
        }
        // The stand-in ssh runs the pipeline here; a real hypervisor's sshd would end it with the
        // session. Stop the hung stage by pid.
        stop(try pid(in: "dd.pid"))
    }
}

@Suite("command timeouts: configuration", .tags(.unit))
struct CommandTimeoutConfigTests {
    @Test("CommandTimeout, SaveTimeout and StallTimeout are read, defaulted, and reach every RemoteHost")
    func keys() throws {
        var f = ConfigFixture()
        let defaults = try Configuration.load(directory: f.materialize()).main
        #expect(defaults.timeouts == RemoteTimeouts(command: 300, save: 3600, stall: 600))
        f.main += "\nCommandTimeout=45\nSaveTimeout=900\nStallTimeout=120"
        let main = try Configuration.load(directory: f.materialize()).main
        #expect(main.timeouts == RemoteTimeouts(command: 45, save: 900, stall: 120))
        #expect(RemoteHost("kvm1", main: main).timeouts == main.timeouts)
    }

    @Test("a timeout of 0, below 5 s or not a number is refused, naming the key and the range")
    func outOfRange() {
        for value in ["0", "4", "ten", "-5"] {
            var f = ConfigFixture()
            f.main += "\nStallTimeout=\(value)"
            let d = f.diagnostics()
            #expect(d.count == 1 && d.first?.key == "StallTimeout" && d.first?.line == 6, "\(d)")
            #expect(d.first?.description.contains("from 5 to 86400") == true, "\(d)")
        }
    }
}
