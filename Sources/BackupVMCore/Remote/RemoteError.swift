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

    public var description: String {
        switch self {
        case .connection(let host, let detail):
            var hint = ""
            if detail.contains("Host key verification failed")
                || detail.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            {
                hint = " (add the host's key to known_hosts: `backup_vm doctor` prints the command)"
            }
            return "cannot reach \(host) over ssh: \(Self.trim(detail))\(hint)"
        case .command(let host, let what, let status, let stderr):
            return "\(what) failed on \(host) (exit \(status)): \(Self.trim(stderr))"
        case .protocolViolation(let host, let what, let detail):
            return "\(what) on \(host): unexpected output: \(detail)"
        case .launch(let detail):
            return "cannot start ssh: \(detail)"
        }
    }

    static func trim(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
        let text = lines.suffix(4).joined(separator: " | ")
        return text.isEmpty ? "(no message)" : String(text.prefix(600))
    }
}
