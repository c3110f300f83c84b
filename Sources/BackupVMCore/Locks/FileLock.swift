import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive flock(2) on a file, held as long as this object (its file descriptor) lives.
/// flock locks belong to the open file description, so the kernel drops them when the holder dies,
/// however it dies: a SIGKILLed worker never leaves a lock behind. O_CLOEXEC keeps the descriptor
/// out of child processes (ssh), which would otherwise keep the lock alive after the worker died.
public final class FileLock: @unchecked Sendable {
    public let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock without waiting; nil when someone else holds it.
    public static func tryAcquire(_ path: String) throws -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("open lock", path: path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { return nil }
            throw SystemError("flock", path: path, errno: e)
        }
        return FileLock(path: path, fd: fd)
    }

    /// Waits for the lock, shared (several holders at once) or exclusive. For the chunk store's short
    /// critical sections (a commit, a sweep's moves), never for slots.
    public static func acquire(_ path: String, shared: Bool) throws -> FileLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("open lock", path: path) }
        while flock(fd, shared ? LOCK_SH : LOCK_EX) != 0 {
            let e = errno
            if e == EINTR { continue }
            close(fd)
            throw SystemError("flock", path: path, errno: e)
        }
        return FileLock(path: path, fd: fd)
    }

    /// Records who holds the lock (pid, job) in the lock file, for `backup_vm status`. Best effort.
    public func describeHolder(_ text: String) {
        guard fd >= 0 else { return }
        _ = ftruncate(fd, 0)
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    public func release() {
        guard fd >= 0 else { return }
        // Clear the holder text first so a reader never sees a stale holder of a free slot.
        _ = ftruncate(fd, 0)
        // Unlock explicitly before closing: a flock belongs to the open file description, and a child
        // that another thread is spawning right now holds a copy of every descriptor until its exec
        // closes them; close alone would leave the slot taken for that moment (a job then put back or
        // refused as "already running" for nothing).
        _ = flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }

    /// True when nobody holds the lock at this instant. It takes the lock and releases it at once, so
    /// a job starting in that instant may find the lock busy: only for tests and as a fallback where
    /// /proc/locks cannot be used (SlotLocks asks LockTable).
    public static func isFree(_ path: String) -> Bool {
        guard let lock = try? tryAcquire(path) else { return false }
        lock.release()
        return true
    }

    /// What the holder wrote with describeHolder, if anything.
    public static func holderText(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
