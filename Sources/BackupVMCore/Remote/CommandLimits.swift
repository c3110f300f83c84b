import Foundation

/// How long a command may run before it is ended: a hung `virsh` (libvirtd stuck), an `lvcreate`
/// waiting on a lock or a `dd` in D state must not hold a VM, a host slot and a global slot forever.
///
/// - `total`: the longest the command may take at all (short commands: virsh, lvs, mkdir ...).
/// - `stall`: the longest a stream may go without moving a byte (a disk copy's total time depends on
///   its size, so only its progress is timed).
/// - `abort`: a raised flag ends the command too. Only commands that are safe to cut get one (copies,
///   not `virsh restore` or `start`, which put a VM back).
public struct CommandLimits: Sendable {
    public var total: Int?
    public var stall: Int?
    public var abort: AbortFlag?
    /// Bytes fed to the command by a thread of ours (a pipe into its stdin): when they grow, the
    /// command is making progress, also while it says nothing.
    public var progress: ProgressCounter?

    public init(total: Int? = nil, stall: Int? = nil, abort: AbortFlag? = nil, progress: ProgressCounter? = nil) {
        self.total = total
        self.stall = stall
        self.abort = abort
        self.progress = progress
    }

    /// No limit: only for local commands that cannot hang on a remote party.
    public static let none = CommandLimits()
}

/// The configured limits of remote steps (backup_vm.conf: CommandTimeout, SaveTimeout, StallTimeout).
public struct RemoteTimeouts: Sendable, Equatable {
    /// Every short remote command: virsh queries, lvcreate/lvremove, mkdir, rm.
    public var command: Int
    /// virsh save and virsh restore: they write or read the whole RAM of a VM.
    public var save: Int
    /// A disk stream (backup or restore) that moves no byte for this long is ended.
    public var stall: Int
    /// Seconds this server waits beyond the hypervisor's own `timeout` of a command: the remote end
    /// normally stops the command itself (and says so, exit 124); the local limit is for a host that
    /// no longer answers at all.
    public var grace: Int

    public init(command: Int = 300, save: Int = 3600, stall: Int = 600, grace: Int = 20) {
        self.command = command
        self.save = save
        self.stall = stall
        self.grace = grace
    }

    public static let defaults = RemoteTimeouts()
}

/// Why a command was ended before it finished.
public enum CommandCut: Sendable, Equatable, CustomStringConvertible {
    case timedOut(seconds: Int)
    case stalled(seconds: Int)
    case aborted

    public var description: String {
        switch self {
        case .timedOut(let seconds): return "no result after \(seconds) s (timeout)"
        case .stalled(let seconds): return "no progress for \(seconds) s (stalled)"
        case .aborted: return "aborted on request"
        }
    }
}

/// A count that one thread raises and another reads (bytes written into a pipe).
public final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count: Int64 = 0
    public init() {}
    public func add(_ n: Int) { lock.withLock { count += Int64(n) } }
    public var value: Int64 { lock.withLock { count } }
}
