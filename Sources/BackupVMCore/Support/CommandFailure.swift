/// A command that cannot do what it was asked, found while running (after parsing): the message is
/// printed as one line, without usage text, and the process exits with the status the README
/// documents for its kind.
public struct CommandFailure: Error, CustomStringConvertible, Sendable {
    /// The exit statuses of backup_vm (README: "Exit status").
    public enum Status: Int32, Sendable {
        case ok = 0
        /// A backup, verify, restore or check failed.
        case failed = 1
        /// The configuration has errors.
        case config = 2
        /// The command line names something that does not exist or is malformed (a VM, a backup).
        case usage = 64
    }

    public let status: Status
    public let message: String

    public var description: String { message }

    public static func usage(_ message: String) -> CommandFailure { CommandFailure(status: .usage, message: message) }
    public static func failed(_ message: String) -> CommandFailure { CommandFailure(status: .failed, message: message) }
    public static func config(_ message: String) -> CommandFailure { CommandFailure(status: .config, message: message) }

    /// A VM name on the command line that no VM can have.
    public static func invalidVMName(_ name: String) -> CommandFailure {
        .usage("'\(name)' is not a valid VM name; expected \(SafeName.vmExpectation)")
    }
}
