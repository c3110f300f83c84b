import Foundation

/// The concurrency limits as flock'd slot files in spool/locks/:
///   global.0 ... global.(MaxBackupThreads-1)
///   host.HOST.0 ... host.HOST.(MaxBackupThreadsForHost-1)
///   vm.VM
/// A job runs only while it holds one global slot, one slot of its host and its VM's lock. The manual
/// `backup_vm NAME`, every daemon process and every test worker take the same files, so the limits hold
/// across processes. Names are validated before they get here (SafeName), so they are safe in paths.
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
    public func hostHasFreeSlot(_ host: String, limit: Int) -> Bool {
        (0..<limit).contains { FileLock.isFree(hostSlotPath(host, $0)) }
    }

    private func firstFree(_ paths: [String]) throws -> FileLock? {
        for path in paths {
            if let lock = try FileLock.tryAcquire(path) { return lock }
        }
        return nil
    }

    /// Who holds which slot now, for `backup_vm status`.
    public func heldSlots() -> [(slot: String, holder: String)] {
        let names = (try? Files.visibleEntries(directory)) ?? []
        return names.sorted().compactMap { name in
            let path = directory + "/" + name
            guard !FileLock.isFree(path) else { return nil }
            return (name, FileLock.holderText(path) ?? "?")
        }
    }
}
