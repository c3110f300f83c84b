import Foundation

/// The concurrency limits as flock'd slot files in spool/locks/:
///   global.0 ... global.(MaxBackupThreads-1)
///   host.HOST.0 ... host.HOST.(MaxBackupThreadsForHost-1)
///   vm.VM
/// A job runs only while it holds one global slot, one slot of its host and its VM's lock. The manual
/// `backup_vm NAME`, every daemon process and every test worker take the same files, so the limits hold
/// across processes. Names are validated before they get here (SafeName), so they are safe in paths.
///
/// Questions about who holds what (`hostHasFreeSlot`, `heldSlots`) are answered from /proc/locks
/// (LockTable), never by taking a slot: taking one even for an instant can make a job that starts at
/// that moment find its slot busy.
public struct SlotLocks: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func globalSlotPath(_ i: Int) -> String { "\(directory)/global.\(i)" }
    public func hostSlotPath(_ host: String, _ i: Int) -> String { "\(directory)/host.\(host).\(i)" }
    public func vmLockPath(_ vm: String) -> String { "\(directory)/vm.\(vm)" }

    public func tryAcquireGlobal(limit: Int) throws -> FileLock? {
        try firstFree((0..<limit).map(globalSlotPath))
    }

    public func tryAcquireHost(_ host: String, limit: Int) throws -> FileLock? {
        try firstFree((0..<limit).map { hostSlotPath(host, $0) })
    }

    public func tryAcquireVM(_ vm: String) throws -> FileLock? {
        try FileLock.tryAcquire(vmLockPath(vm))
    }

    /// Is there a free slot for this host right now? A hint only: it may be taken a moment later.
    /// Read from /proc/locks; only where that cannot be trusted (see LockTable.isReliable) by taking
    /// each slot for an instant, as before.
    public func hostHasFreeSlot(_ host: String, limit: Int) -> Bool {
        let paths = (0..<limit).map { hostSlotPath(host, $0) }
        guard let table = trustedLockTable() else { return paths.contains { FileLock.isFree($0) } }
        return paths.contains { table.holder(of: $0) == nil }
    }

    private func firstFree(_ paths: [String]) throws -> FileLock? {
        for path in paths {
            if let lock = try FileLock.tryAcquire(path) { return lock }
        }
        return nil
    }

    /// /proc/locks, when it can be read and shows this directory's locks under their stat(2) ids.
    func trustedLockTable() -> LockTable? {
        guard LockTable.isReliable(for: directory) else { return nil }
        return LockTable.current()
    }

    /// Who holds which slot now, for `backup_vm status`; takes no lock. The holder is what it wrote
    /// into the file (pid and job), else its pid from /proc/locks. Where /proc/locks cannot be used,
    /// the files' holder notes alone are shown (a holder clears its note when it lets go; one that
    /// was killed leaves it behind, hence the remark).
    public func heldSlots() -> [(slot: String, holder: String)] {
        let names = ((try? Files.visibleEntries(directory)) ?? []).sorted()
        guard let table = trustedLockTable() else {
            return names.compactMap { name in
                FileLock.holderText(directory + "/" + name).map { (name, "\($0) (from its note; not verified)") }
            }
        }
        return names.compactMap { name in
            let path = directory + "/" + name
            guard let pid = table.holder(of: path) else { return nil }
            return (name, FileLock.holderText(path) ?? "pid=\(pid)")
        }
    }
}
