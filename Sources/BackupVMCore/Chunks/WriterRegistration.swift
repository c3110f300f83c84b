import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A running writer of the chunk store (a backup job): `.staging/JOB.writer`, a file that holds an
/// exclusive flock for as long as the job runs and lists, 32 raw bytes each, every chunk the job has
/// named so far: the chunks it found in the store and the ones it staged. The garbage collector keeps
/// every chunk a running writer lists (ChunkCollector), whatever the clocks say.
///
/// The file appears under its name only once it is locked: it is made and locked under a temporary
/// name and then linked into place. A collector therefore never sees a registration that is not yet
/// locked and takes it for a dead writer's (it used to be created, then locked: a collector's shared
/// lock in between made the registration fail, or unlinked it).
final class WriterRegistration: @unchecked Sendable {
    let path: String
    private var fd: Int32
    private let lock = NSLock()

    /// A hook for the tests: called after the locked file exists under its temporary name and before
    /// it is published under `path`.
    nonisolated(unsafe) static var beforePublishing: ((String) -> Void)?

    init(path: String) throws {
        let temporary = path + ".new-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: temporary) }
        defer { unlink(temporary) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw SystemError("flock", path: temporary)
        }
        Self.beforePublishing?(temporary)
        do {
            try Self.publish(temporary, as: path)
        } catch {
            close(fd)
            throw error
        }
        self.path = path
        self.fd = fd
    }

    /// Links the locked file into place. A registration already there is a dead writer's (removed)
    /// or a live one's (an error: one job per name).
    private static func publish(_ temporary: String, as path: String) throws {
        for _ in 0..<3 {
            if link(temporary, path) == 0 { return }
            guard errno == EEXIST else { throw SystemError("link", path: path) }
            guard WriterRegistration.isAbandoned(path) else {
                throw SystemError("register (another job writes under this name)", path: path, errno: EEXIST)
            }
            unlink(path)
        }
        throw SystemError("register as a chunk store writer", path: path, errno: EAGAIN)
    }

    /// Is the registration at `path` a dead writer's (nobody holds its lock)? A file that cannot be
    /// opened is not called abandoned.
    static func isAbandoned(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_SH | LOCK_NB) == 0
    }

    /// Adds `digest` to the chunks this writer names. Called before the writer asks the store for the
    /// chunk or stages it: a collector that reads the list after that finds it there.
    func record(_ digest: ChunkDigest) throws {
        try lock.withLock {
            guard fd >= 0 else { throw SystemError("record a chunk (registration released)", path: path, errno: EBADF) }
            var offset = 0
            while offset < ChunkDigest.byteCount {
                let n = digest.bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: path)
                }
                offset += n
            }
        }
    }

    func release() {
        lock.withLock {
            guard fd >= 0 else { return }
            unlink(path)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }

    /// The chunks a registration file lists. A torn last record (a write in progress) is left out: the
    /// writer checks the store only after its write is complete (see ChunkCollector).
    static func references(in path: String) throws -> [ChunkDigest] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        let bytes = try Files.readAll(fd, limit: Int.max - 1, path: path)
        let whole = bytes.count - bytes.count % ChunkDigest.byteCount
        return stride(from: 0, to: whole, by: ChunkDigest.byteCount).map {
            ChunkDigest(bytes: Array(bytes[$0..<($0 + ChunkDigest.byteCount)]))!
        }
    }
}
