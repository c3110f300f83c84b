import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The deduplicating chunk store of `Store=chunks`: `BackupStorage/.chunks/`, one file per distinct
/// 4 MiB chunk of disk content, named by the content's SHA-256 and holding it as one zstd frame
/// (`.chunks/abcd/abcd…64 hex….zst`; the first four hex digits fan out into at most 65,536
/// directories). A chunk file is only ever created by a rename of a complete, fsynced, verified file,
/// so a name in the store always means that content (docs/chunk-store.md) — unless the disk damaged it
/// since: a reader that finds a chunk damaged moves it to `.quarantine/` (ChunkQuarantine), so that the
/// next backup that needs the content sends it again instead of naming the damaged file.
public struct ChunkStore: Sendable {
    public let root: String

    public init(storage: String) { root = storage + "/" + BackupNames.chunkStore }

    public func chunkPath(_ digest: ChunkDigest) -> String {
        let hex = digest.hex
        return root + "/" + hex.prefix(4) + "/" + hex + ".zst"
    }

    var stagingRoot: String { root + "/" + BackupNames.chunkStaging }
    var trashRoot: String { root + "/" + BackupNames.chunkTrash }
    var quarantineRoot: String { root + "/" + BackupNames.chunkQuarantine }
    var commitLockPath: String { root + "/" + BackupNames.chunkCommitLock }
    var collectionLockPath: String { root + "/" + BackupNames.chunkCollectionLock }

    /// Is this chunk in the store (a non-empty regular file under its name)? A backup asks only after
    /// its registration lists the chunk (ChunkStaging.has), which is what keeps a garbage collection
    /// from taking it (ChunkCollector).
    public func contains(_ digest: ChunkDigest) -> Bool {
        var st = stat()
        return lstat(chunkPath(digest), &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_size > 0
    }

    /// A job's private staging directory: its new chunks wait there until the whole stream checks.
    /// The job is registered as a writer (`.staging/JOB.writer`, flock held until the staging is
    /// committed or discarded, or the process dies): a garbage collection keeps every chunk it names.
    public func staging(for job: String) throws -> ChunkStaging {
        try Files.makeDirectory(root, mode: 0o700)
        try Files.makeDirectory(stagingRoot, mode: 0o700)
        recoverAbandonedSweep()
        let writer = try WriterRegistration(path: stagingRoot + "/" + job + ChunkStore.writerSuffix)
        let directory = stagingRoot + "/" + job
        if Files.exists(directory) { Files.removeTree(directory) }
        try Files.makeDirectory(directory, mode: 0o700)
        return ChunkStaging(store: self, directory: directory, writer: writer)
    }

    static let writerSuffix = ".writer"

    /// Every chunk file in the store, with its digest and lstat: the fan-out directories only (real
    /// directories of 4 hex digits; a link planted among them is not followed), files named by a
    /// digest only. A directory that cannot be listed is an error, never an empty one.
    func forEachChunk(_ body: (ChunkDigest, String, stat) throws -> Void) throws {
        for fan in try Files.entries(root) where fan.utf8.count == 4 && fan.allSatisfy(\.isHexDigit) {
            let dir = root + "/" + fan
            var dirStat = stat()
            guard lstat(dir, &dirStat) == 0, (dirStat.st_mode & S_IFMT) == S_IFDIR else { continue }
            for name in try Files.entries(dir) {
                guard name.hasSuffix(".zst"), let digest = ChunkDigest(hex: name.dropLast(4)) else { continue }
                var st = stat()
                guard lstat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                try body(digest, dir + "/" + name, st)
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
        if Files.exists(writer) {
            guard WriterRegistration.isAbandoned(writer) else { return false }
            unlink(writer)
        }
        Files.removeTree(directory)
        return true
    }

    /// One chunk's content, decompressed and checked against its name; `length` is what the index says.
    /// A chunk found damaged is quarantined (moved aside) before the error is thrown; one that cannot
    /// be read (an I/O error) is reported as such and left where it is.
    public func read(_ digest: ChunkDigest, length: Int) throws -> [UInt8] {
        let frame = try readFrame(digest)
        let path = chunkPath(digest)
        var content = [UInt8](repeating: 0, count: length)
        let verdict = content.withUnsafeMutableBytes { out in
            frame.withUnsafeBytes { ChunkContent.check(frame: $0, length: length, digest: digest, into: out) }
        }
        let why: String
        switch verdict {
        case .ok: return content
        case .notAFrame: why = "not a zstd frame of \(length) bytes"
        case .wrongDigest: why = "its content does not hash to its name"
        }
        let moved = ChunkQuarantine(store: self).quarantine(digest, why: why)
        throw ChunkStoreError.damaged(digest: digest, path: path, why: why, quarantined: moved)
    }

    /// A chunk file's bytes as stored (one zstd frame), without checking them.
    func readFrame(_ digest: ChunkDigest) throws -> [UInt8] {
        let path = chunkPath(digest)
        do {
            return try Files.readRegularFileOrThrow(path, limit: ChunkFormat.maxPayload)
        } catch let e as SystemError where e.errno == ENOENT {
            // A collection that died midway may hold it in its trash: that goes back first.
            if recoverAbandonedSweep(),
                let bytes = try? Files.readRegularFileOrThrow(path, limit: ChunkFormat.maxPayload)
            {
                return bytes
            }
            throw ChunkStoreError.missing(digest: digest, path: path)
        } catch let e as SystemError {
            throw ChunkStoreError.unreadable(digest: digest, path: path, why: "\(e)")
        }
    }

    /// Puts back every chunk a collection moved to its trash and did not get to remove, if no
    /// collection runs now (a collection that died midway could not tell which of them a backup that
    /// committed meanwhile names). True if anything was put back.
    @discardableResult
    func recoverAbandonedSweep() -> Bool {
        guard Files.exists(trashRoot) else { return false }
        guard let lock = try? FileLock.tryAcquire(collectionLockPath) else { return false }
        defer { lock.release() }
        return ChunkTrash(store: self).restoreAll() > 0
    }
}

public enum ChunkStoreError: Error, CustomStringConvertible, Equatable {
    case missing(digest: ChunkDigest, path: String)
    case damaged(digest: ChunkDigest, path: String, why: String, quarantined: String?)
    case unreadable(digest: ChunkDigest, path: String, why: String)

    public var description: String {
        switch self {
        case .missing(_, let path): return "chunk \(path) is missing from the chunk store"
        case .damaged(_, let path, let why, let moved):
            let aside =
                moved.map { "; moved to \($0), the next backup of this content sends it again" }
                ?? "; it could not be moved aside"
            return "chunk \(path) is damaged: \(why)\(aside)"
        case .unreadable(_, let path, let why): return "chunk \(path) cannot be read: \(why)"
        }
    }
}
