import Foundation

/// The daemon's after-job work (metrics, the notifier), one job at a time on a thread of its own: a
/// slow notifier never holds a worker, 200 jobs failing at once (a hypervisor down) do not start 200
/// notifiers together, and at shutdown what is queued is finished (within a limit) before the
/// daemon exits, so the last job's failure is still told.
public final class AftermathQueue: Sendable {
    private let queue = DispatchQueue(label: "backup_vm.aftermath")
    private let group = DispatchGroup()

    public init() {}

    public func submit(_ work: @escaping @Sendable () -> Void) { queue.async(group: group, execute: work) }

    /// Waits until everything submitted is done, at most `timeout` seconds; false when it was not.
    @discardableResult
    public func drain(timeout: TimeInterval) -> Bool { group.wait(timeout: .now() + timeout) == .success }
}
