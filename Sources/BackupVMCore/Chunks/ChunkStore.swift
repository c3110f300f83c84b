import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The deduplicating chunk store of `Store=chunks`: `BackupStorage/.chunks/`, one file per distinct
/// 4 MiB chunk of disk content, named by the content's SHA-256 and holding it as one zstd frame
/// (`.chunks/abcd/abcd…64 hex….zst`; the first four hex digits fan out into at most 65,536
/// directories). A chunk file is only ever created by a rename of a complete, fsynced, verified file,
/// so a name in the store always means that content (docs/chunk-store.md).
public struct ChunkStore: Sendable {
    public let root: String

    public init(storage: String) { root = storage + "/" + BackupNames.chunkStore }

    public func chunkPath(_ digest: ChunkDigest) -> String {
        let hex = digest.hex
        return root + "/" + hex.prefix(4) + "/" + hex + ".zst"
    }

    var stagingRoot: String { root + "/" + BackupNames.chunkStaging }

    /// Is this chunk in the store? A yes also sets the chunk's modification time to now: a backup that
    /// reuses a chunk marks it as in use, so a garbage collection running at the same time keeps it
    /// (the collector removes only chunks older than the oldest running backup; docs/chunk-store.md).
    public func contains(_ digest: ChunkDigest) -> Bool {
        let path = chunkPath(digest)
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 else { return false }
        return utimensat(AT_FDCWD, path, nil, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// A job's private staging directory: its new chunks wait there until the whole stream checks.
    /// The job is registered as a writer (`.staging/JOB.writer`, flock held until the staging is
    /// committed or discarded, or the process dies): a garbage collection keeps every chunk touched
    /// since the oldest running writer began.
    public func staging(for job: String) throws -> ChunkStaging {
        try Files.makeDirectory(root, mode: 0o700)
        try Files.makeDirectory(stagingRoot, mode: 0o700)
        let writer = try WriterRegistration(path: stagingRoot + "/" + job + ChunkStore.writerSuffix)
        let directory = stagingRoot + "/" + job
        if Files.exists(directory) { Files.removeTree(directory) }
        try Files.makeDirectory(directory, mode: 0o700)
        return ChunkStaging(store: self, directory: directory, writer: writer)
    }

    static let writerSuffix = ".writer"

    /// Every chunk file in the store, with its digest and lstat: the fan-out directories only (real
    /// directories of 4 hex digits; a link planted among them is not followed), files named by a
    /// digest only.
    func forEachChunk(_ body: (ChunkDigest, String, stat) -> Void) {
        for fan in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where fan.utf8.count == 4 {
            let dir = root + "/" + fan
            var dirStat = stat()
            guard lstat(dir, &dirStat) == 0, (dirStat.st_mode & S_IFMT) == S_IFDIR else { continue }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                guard name.hasSuffix(".zst"), let digest = ChunkDigest(hex: name.dropLast(4)) else { continue }
                var st = stat()
                guard lstat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                body(digest, dir + "/" + name, st)
            }
        }
    }

    /// Removes the staging directory and registration of job `job` if no process holds it any more
    /// (its worker died); true if there was one to remove. A running job's staging is left alone.
    @discardableResult
    public func removeAbandonedStaging(job: String) -> Bool {
        let writer = stagingRoot + "/" + job + ChunkStore.writerSuffix
        let directory = stagingRoot + "/" + job
        guard Files.exists(writer) || Files.exists(directory) else { return false }
        let fd = open(writer, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd >= 0 {
            defer { close(fd) }
            guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return false }
            unlink(writer)
        }
        Files.removeTree(directory)
        return true
    }

    /// One chunk's content, decompressed and checked against its name; `length` is what the index says.
    public func read(_ digest: ChunkDigest, length: Int) throws -> [UInt8] {
        let path = chunkPath(digest)
        guard let frame = Files.readRegularFile(path, limit: ChunkFormat.maxPayload) else {
            throw ChunkStoreError.missing(digest: digest, path: path)
        }
        var content = [UInt8](repeating: 0, count: length)
        let verdict = content.withUnsafeMutableBytes { out in
            frame.withUnsafeBytes { ChunkContent.check(frame: $0, length: length, digest: digest, into: out) }
        }
        switch verdict {
        case .notAFrame:
            throw ChunkStoreError.damaged(digest: digest, path: path, why: "not a zstd frame of \(length) bytes")
        case .wrongDigest:
            throw ChunkStoreError.damaged(digest: digest, path: path, why: "its content does not hash to its name")
        case .ok: break
        }
        return content
    }
}

public enum ChunkStoreError: Error, CustomStringConvertible, Equatable {
    case missing(digest: ChunkDigest, path: String)
    case damaged(digest: ChunkDigest, path: String, why: String)

    public var description: String {
        switch self {
        case .missing(_, let path): return "chunk \(path) is missing from the chunk store"
        case .damaged(_, let path, let why): return "chunk \(path) is damaged: \(why)"
        }
    }
}

/// A running writer of the chunk store: a file holding an exclusive flock and the writer's start
/// (its modification time, set when the lock is taken). Released by `release()` or by the kernel when
/// the process dies.
final class WriterRegistration {
    let path: String
    private var fd: Int32

    init(path: String) throws {
        // A collector that opened the file between our create and our lock took it for a dead writer's
        // and unlinked it: then the lock we hold is on a file nobody sees, and we start over.
        for _ in 0..<5 {
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw SystemError("create", path: path) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw SystemError("flock (another job writes under this name)", path: path)
            }
            var mine = stat()
            var named = stat()
            if fstat(fd, &mine) == 0, lstat(path, &named) == 0, mine.st_ino == named.st_ino, mine.st_dev == named.st_dev
            {
                // The start time the collector reads: set now, after the lock is ours.
                _ = futimens(fd, nil)
                self.path = path
                self.fd = fd
                return
            }
            close(fd)
        }
        throw SystemError("register as a chunk store writer", path: path, errno: EAGAIN)
    }

    func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
