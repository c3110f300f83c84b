import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A daemon's mark in its spool: `locks/daemon.PID`, flock'd for the daemon's life (the kernel drops
/// the lock when the daemon dies, however it dies).
///
/// Several daemons may serve one spool: a claim is a rename that only one of them wins, a claimed job
/// is flock'd by its worker (so no daemon takes another's live job for abandoned), and the slots are
/// flock'd files that every process takes, so the limits hold across all of them. But it is rarely
/// meant (a systemd unit and a forgotten `backup_vmd --console`), so a daemon that finds another at
/// start says so (`othersMessage`). The mark is made under a hidden name and renamed into place
/// already locked: a visible mark whose lock is free was left by a daemon that was killed, and goes.
public final class DaemonPresence: @unchecked Sendable {
    public let path: String
    /// Pids of the other daemons that served the spool when this one started.
    public let others: [Int32]
    private var fd: Int32

    private init(path: String, fd: Int32, others: [Int32]) {
        self.path = path
        self.fd = fd
        self.others = others
    }

    static let prefix = "daemon."

    /// Marks this process as a daemon of `spool` and finds the others.
    public static func announce(in spool: Spool) throws -> DaemonPresence {
        let locks = spool.locks
        let name = prefix + "\(getpid())"
        let path = locks.directory + "/" + name
        let hidden = locks.directory + "/." + name
        let fd = open(hidden, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("open", path: hidden) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, rename(hidden, path) == 0 else {
            let error = SystemError("lock and rename", path: hidden)
            close(fd)
            unlink(hidden)
            throw error
        }
        let note = Array("pid=\(getpid()) backup_vmd\n".utf8)
        _ = note.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DaemonPresence(path: path, fd: fd, others: liveOthers(in: locks, except: name))
    }

    /// The other daemons' marks that are held; marks nobody holds any more are removed.
    static func liveOthers(in locks: SlotLocks, except own: String) -> [Int32] {
        let names = ((try? Files.visibleEntries(locks.directory)) ?? []).filter {
            $0.hasPrefix(prefix) && $0 != own
        }
        let table = locks.trustedLockTable()
        var pids: [Int32] = []
        for name in names.sorted() {
            let path = locks.directory + "/" + name
            let held = table.map { $0.holder(of: path) != nil } ?? !FileLock.isFree(path)
            if held {
                pids.append(Int32(name.dropFirst(prefix.count)) ?? table?.holder(of: path) ?? 0)
            } else {
                unlink(path)
            }
        }
        return pids
    }

    /// One line for the log when other daemons serve the spool too; nil when this one is alone.
    public func othersMessage(spool: String) -> String? {
        guard !others.isEmpty else { return nil }
        let pids = others.map(String.init).joined(separator: ", ")
        return "another backup_vmd serves spool \(spool) too (pid \(pids)): each job is claimed by one of them "
            + "and the slot limits hold across all; stop one if that was not meant"
    }

    /// Removes the mark (a daemon that stops); the lock goes with the descriptor.
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
