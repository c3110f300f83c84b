import Foundation

/// Which VMs this process is working on, so that the recovery of an abandoned job and the jobs the
/// worker pool starts never meet on one VM. Recovery runs beside the pool's dispatching: without
/// this, a job claimed while its VM is being recovered would find the VM's lock taken and fail as
/// "already running", and recovery could not clean up while a job of the VM runs.
///
/// Jobs share (a second job of a VM is still started, and fails on the VM's flock as before); a
/// recovery excludes jobs and other recoveries. Across processes the VM's flock still decides.
public final class VMActivity: @unchecked Sendable {
    private let lock = NSLock()
    private var jobs: [String: Int] = [:]
    private var recovering: Set<String> = []

    public init() {}

    /// A job of `vm` is about to be started; false (and nothing recorded) while it is being recovered.
    public func beginJob(_ vm: String) -> Bool {
        lock.withLock {
            guard !recovering.contains(vm) else { return false }
            jobs[vm, default: 0] += 1
            return true
        }
    }

    public func endJob(_ vm: String) {
        lock.withLock {
            let n = (jobs[vm] ?? 1) - 1
            jobs[vm] = n > 0 ? n : nil
        }
    }

    /// `vm` is about to be recovered; false while a job of it runs or another recovery has it.
    public func beginRecovery(_ vm: String) -> Bool {
        lock.withLock {
            guard jobs[vm] == nil, !recovering.contains(vm) else { return false }
            recovering.insert(vm)
            return true
        }
    }

    public func endRecovery(_ vm: String) {
        _ = lock.withLock { recovering.remove(vm) }
    }

    public func isRecovering(_ vm: String) -> Bool { lock.withLock { recovering.contains(vm) } }
}
