import Foundation

/// Why a command on a hypervisor failed, told so an operator can act on it.
public enum RemoteError: Error, CustomStringConvertible, Sendable, Equatable {
    /// ssh itself failed (exit 255): host unreachable, key refused, host key unknown or changed.
    case connection(host: String, detail: String)
    /// The remote command ran and failed.
    case command(host: String, what: String, status: Int32, stderr: String)
    /// The remote command's output was not what the protocol expects.
    case protocolViolation(host: String, what: String, detail: String)
    case launch(String)
    /// The command was ended by its limits: too long, no progress, or an abort.
    case timedOut(host: String, what: String, cut: CommandCut)

    /// Why ssh could not connect, read from ssh's own messages (its stderr). The one place that
    /// interprets them: hints in descriptions and `backup_vm doctor` switch on this.
    public enum ConnectionFailure: Sendable, Equatable {
        /// known_hosts has no key for the host (BatchMode refuses to ask).
        case hostKeyUnknown
        /// known_hosts has a different key for the host: reinstalled, or someone in between.
        case hostKeyChanged
        /// The host key is fine but the server refused our key.
        case authenticationRefused
        /// No connection at all: refused, timed out, no route, unknown name.
        case unreachable
        case other
    }

    /// The kind of ssh connection failure; nil for errors that are not connection failures.
    public var connectionFailure: ConnectionFailure? {
        guard case .connection(_, let detail) = self else { return nil }
        return Self.classify(sshStderr: detail)
    }

    /// Classifies ssh's stderr after an exit status of 255. Order matters: the "identification has
    /// changed" banner is followed by "Host key verification failed." too.
    public static func classify(sshStderr text: String) -> ConnectionFailure {
        func has(_ needle: String) -> Bool { text.range(of: needle, options: .caseInsensitive) != nil }
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || (has("Host key for") && has("has changed")) {
            return .hostKeyChanged
        }
        if has("Host key verification failed") || has("host key is known for") || has("No matching host key") {
            return .hostKeyUnknown
        }
        if has("Permission denied") || has("Too many authentication failures") { return .authenticationRefused }
        let unreachable = [
            "Connection refused", "Connection timed out", "No route to host", "Network is unreachable",
            "Could not resolve hostname", "Name or service not known", "Connection closed by",
            "Connection reset by", "Operation timed out",
        ]
        if unreachable.contains(where: has) { return .unreachable }
        return .other
    }

    public var description: String {
        switch self {
        case .connection(let host, let detail):
            var hint = ""
            if connectionFailure == .hostKeyUnknown || connectionFailure == .hostKeyChanged {
                hint = " (add the host's key to known_hosts: `backup_vm doctor` prints the command)"
            }
            // A shared connection's client learns nothing when the master loses the host (the master
            // reports "server not responding" to itself): say what that means.
            let text = Self.trim(detail) == "(no message)" ? "the connection was lost (no answer)" : Self.trim(detail)
            return "cannot reach \(host) over ssh: \(text)\(hint)"
        case .command(let host, let what, let status, let stderr):
            return "\(what) failed on \(host) (exit \(status)): \(Self.trim(stderr))"
        case .protocolViolation(let host, let what, let detail):
            return "\(what) on \(host): unexpected output: \(detail)"
        case .launch(let detail):
            return "cannot start ssh: \(detail)"
        case .timedOut(let host, let what, .aborted):
            return "\(what) on \(host) was ended: aborted on request"
        case .timedOut(let host, let what, let cut):
            return "\(what) on \(host) was ended: \(cut); the host or its libvirtd/LVM may be hung"
        }
    }

    static func trim(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
        let text = lines.suffix(4).joined(separator: " | ")
        return text.isEmpty ? "(no message)" : String(text.prefix(600))
    }
}
