import Foundation

/// One hypervisor reached over ssh: the single place where ssh command lines are built and exit codes
/// are classified. Every script runs under `set -o pipefail` (and -eu), so a failing stage of a
/// pipeline fails the command instead of passing on a truncated stream.
public struct RemoteHost: Sendable {
    public let name: String
    public let sshConfig: String?
    public let connectTimeout: Int
    public let ciphers: String?
    /// When set, commands share one connection per host (see SSHConnectionShare).
    public let share: SSHConnectionShare?
    /// The ssh client (a test puts a stand-in here that runs the script locally against stubs).
    public let sshProgram: String
    /// How long each kind of remote step may take (see `Step`).
    public let timeouts: RemoteTimeouts

    /// The kind of a remote step, which decides its time limit.
    public enum Step: Sendable {
        /// A short command (virsh queries, lvcreate/lvremove, mkdir, rm): RemoteTimeouts.command.
        case command
        /// virsh save / virsh restore, which move a VM's whole RAM: RemoteTimeouts.save.
        case save
    }

    public init(
        name: String, sshConfig: String?, connectTimeout: Int, ciphers: String? = nil, share: SSHConnectionShare? = nil,
        sshProgram: String = "ssh", timeouts: RemoteTimeouts = .defaults
    ) {
        precondition(SafeName.isValidHostName(name))
        self.name = name
        self.sshConfig = sshConfig
        self.connectTimeout = connectTimeout
        self.ciphers = ciphers
        self.share = share
        self.sshProgram = sshProgram
        self.timeouts = timeouts
    }

    public init(_ name: String, main: MainConfig, share: SSHConnectionShare? = nil, sshProgram: String = "ssh") {
        self.init(
            name: name, sshConfig: main.sshConfig, connectTimeout: main.sshConnectTimeout, ciphers: main.sshCiphers,
            share: share, sshProgram: sshProgram, timeouts: main.timeouts)
    }

    func seconds(_ step: Step) -> Int { step == .save ? timeouts.save : timeouts.command }

    /// ssh's argv for one remote script. Host keys are verified (no StrictHostKeyChecking=no);
    /// BatchMode makes a missing key fail instead of prompting. With `remoteTimeout` the hypervisor
    /// ends the script itself after that many seconds (coreutils `timeout`: SIGTERM to the script's
    /// whole process group, SIGKILL 10 s later): killing the local ssh alone would leave a hung
    /// `virsh` running there, since a session without a terminal gets no hangup.
    public func argv(_ script: String, remoteTimeout: Int? = nil) -> [String] {
        var a = [sshProgram]
        if let sshConfig { a += ["-F", sshConfig] }
        a += [
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=\(connectTimeout)", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
        ]
        if let ciphers { a += ["-o", "Ciphers=\(ciphers)"] }
        if let share { a += share.options(for: self) }
        a += [
            "-T", "-l", "root", "--", name,
            "umask 077; set -euo pipefail; " + script,
        ]
        // ssh joins the remaining words with spaces and hands them to the remote user's shell: the
        // script is passed as one word and must run under bash for pipefail.
        let limit = remoteTimeout.map { "timeout -k 10 \($0) " } ?? ""
        a[a.count - 1] = limit + "bash -c " + ShellQuote.quote(a[a.count - 1])
        return a
    }

    /// Runs a script and returns its stdout; a non-zero exit is an error naming `what`.
    @discardableResult
    public func run(_ script: String, what: String, step: Step = .command) throws(RemoteError) -> String {
        let outcome = try runLimited(script, what: what, step: step)
        try check(outcome.status, stderr: outcome.stderr, what: what, timeout: seconds(step))
        return outcome.stdout
    }

    /// Runs a script and returns its exit status and output without judging a non-zero exit
    /// (ssh failures, 255, and timeouts are still errors).
    public func probe(_ script: String, what: String) throws(RemoteError) -> ProcessOutcome {
        let outcome = try runLimited(script, what: what, step: .command)
        if outcome.status == 255 { throw .connection(host: name, detail: outcome.stderr) }
        if outcome.status == 124 { throw .timedOut(host: name, what: what, cut: .timedOut(seconds: seconds(.command))) }
        return outcome
    }

    private func runLimited(_ script: String, what: String, step: Step) throws(RemoteError) -> ProcessOutcome {
        let limit = seconds(step)
        let limits = CommandLimits(total: limit + timeouts.grace)
        return try launch(what: what) { () throws(ProcessError) in
            try ProcessRunner.run(argv(script, remoteTimeout: limit), limits: limits)
        }
    }

    /// Streams a script's stdout into `sink`; returns its stderr (scripts report trailers there).
    /// A stream has no total limit (its length depends on the disk) but ends after
    /// `RemoteTimeouts.stall` seconds without a byte moving either way, or when `abort` is raised.
    /// A short command that only takes its input on stdin (`virsh define` of an XML) passes `step`:
    /// then it has that step's limit too, on the hypervisor (`timeout`) and here, as `run` has.
    public func stream(
        _ script: String, what: String, stdin: Int32? = nil, abort: AbortFlag? = nil,
        progress: ProgressCounter? = nil, step: Step? = nil, sink: (UnsafeRawBufferPointer) throws -> Bool
    ) throws(RemoteError) -> String {
        let limit = step.map(seconds)
        let limits = CommandLimits(
            total: limit.map { $0 + timeouts.grace }, stall: timeouts.stall, abort: abort, progress: progress)
        let (status, stderr) = try launch(what: what) { () throws(ProcessError) in
            try ProcessRunner.stream(argv(script, remoteTimeout: limit), stdin: stdin, limits: limits, sink: sink)
        }
        try check(status, stderr: stderr, what: what, timeout: limit)
        return stderr
    }

    /// ssh itself could not be run: RemoteError.launch, so callers see one error type per host; a
    /// command ended by its limits is RemoteError.timedOut.
    private func launch<T>(what: String, _ body: () throws(ProcessError) -> T) throws(RemoteError) -> T {
        do {
            return try body()
        } catch .cut(_, let cut, _) {
            throw .timedOut(host: name, what: what, cut: cut)
        } catch {
            throw .launch(error.description)
        }
    }

    /// Judges an exit status. 124 is what `timeout` returns when it ended the script (only scripts
    /// run with a `remoteTimeout` of `timeout` seconds are judged so).
    func check(_ status: Int32, stderr: String, what: String, timeout: Int? = nil) throws(RemoteError) {
        if status == 0 { return }
        if status == 255 { throw .connection(host: name, detail: stderr) }
        if status == 124, let timeout { throw .timedOut(host: name, what: what, cut: .timedOut(seconds: timeout)) }
        throw .command(host: name, what: what, status: status, stderr: stderr)
    }
}
