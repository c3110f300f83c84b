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

    public init(
        name: String, sshConfig: String?, connectTimeout: Int, ciphers: String? = nil, share: SSHConnectionShare? = nil,
        sshProgram: String = "ssh"
    ) {
        precondition(SafeName.isValidHostName(name))
        self.name = name
        self.sshConfig = sshConfig
        self.connectTimeout = connectTimeout
        self.ciphers = ciphers
        self.share = share
        self.sshProgram = sshProgram
    }

    public init(_ name: String, main: MainConfig, share: SSHConnectionShare? = nil, sshProgram: String = "ssh") {
        self.init(
            name: name, sshConfig: main.sshConfig, connectTimeout: main.sshConnectTimeout, ciphers: main.sshCiphers,
            share: share, sshProgram: sshProgram)
    }

    /// ssh's argv for one remote script. Host keys are verified (no StrictHostKeyChecking=no);
    /// BatchMode makes a missing key fail instead of prompting.
    public func argv(_ script: String) -> [String] {
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
        a[a.count - 1] = "bash -c " + ShellQuote.quote(a[a.count - 1])
        return a
    }

    /// Runs a script and returns its stdout; a non-zero exit is an error naming `what`.
    @discardableResult
    public func run(_ script: String, what: String) throws(RemoteError) -> String {
        let outcome = try launch { () throws(ProcessError) in try ProcessRunner.run(argv(script)) }
        try check(outcome.status, stderr: outcome.stderr, what: what)
        return outcome.stdout
    }

    /// Runs a script and returns its exit status and output without judging a non-zero exit
    /// (ssh failures, 255, are still errors).
    public func probe(_ script: String, what: String) throws(RemoteError) -> ProcessOutcome {
        let outcome = try launch { () throws(ProcessError) in try ProcessRunner.run(argv(script)) }
        if outcome.status == 255 { throw .connection(host: name, detail: outcome.stderr) }
        return outcome
    }

    /// Streams a script's stdout into `sink`; returns its stderr (scripts report trailers there).
    public func stream(
        _ script: String, what: String, stdin: Int32? = nil,
        sink: (UnsafeRawBufferPointer) throws -> Bool
    ) throws(RemoteError) -> String {
        let (status, stderr) = try launch { () throws(ProcessError) in
            try ProcessRunner.stream(argv(script), stdin: stdin, sink: sink)
        }
        try check(status, stderr: stderr, what: what)
        return stderr
    }

    /// ssh itself could not be run: RemoteError.launch, so callers see one error type per host.
    private func launch<T>(_ body: () throws(ProcessError) -> T) throws(RemoteError) -> T {
        do { return try body() } catch { throw .launch(error.description) }
    }

    func check(_ status: Int32, stderr: String, what: String) throws(RemoteError) {
        if status == 0 { return }
        if status == 255 { throw .connection(host: name, detail: stderr) }
        throw .command(host: name, what: what, status: status, stderr: stderr)
    }
}
