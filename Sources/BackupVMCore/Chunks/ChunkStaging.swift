import CShims
import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The new chunks of one job, in `.chunks/.staging/JOB/` until the job's whole stream has arrived and
/// checked. `commit()` renames them into the store; `discard()` removes them. A failed or hostile
/// transfer therefore never adds a file to the store itself; a killed worker leaves only its staging
/// directory, which the next job of that name and the garbage collector remove.
public final class ChunkStaging {
    public let store: ChunkStore
    public let directory: String
    private(set) var staged: [ChunkDigest] = []
    private var stagedSet = Set<ChunkDigest>()
    private(set) var stagedBytes: Int64 = 0
    /// Disk content the receivers of this job have gone through (known, new and zero chunks): what
    /// `status` shows as the job's progress.
    public let progress = ProgressCounter()

    private let writer: WriterRegistration
    private let lock = NSLock()

    init(store: ChunkStore, directory: String, writer: WriterRegistration) {
        self.store = store
        self.directory = directory
        self.writer = writer
    }

    /// Is this chunk staged already (by an earlier disk of the same job)? (The receiver asks while
    /// the verifier writes: the staged set is behind a lock.)
    func contains(_ digest: ChunkDigest) -> Bool { lock.withLock { stagedSet.contains(digest) } }

    /// Is this chunk in the store or staged here? (What a receiver need not ask for.) The chunk is
    /// added to the job's registration first, whatever the answer: a garbage collection that runs now
    /// keeps every chunk a running job named (ChunkCollector), and a job names each chunk of its stream
    /// through here before it answers for it or stages it.
    func has(_ digest: ChunkDigest) throws -> Bool {
        if contains(digest) { return true }
        try writer.record(digest)
        return store.contains(digest)
    }

    /// Writes one verified chunk frame under its name (once per job); `commit` makes it durable.
    func write(_ digest: ChunkDigest, frame: UnsafeRawBufferPointer) throws {
        guard !contains(digest) else { return }
        let path = directory + "/" + digest.hex
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: path) }
        do { try WireIO.writeAll(fd, frame) } catch {
            close(fd)
            if case WireError.io(_, let code) = error { throw SystemError("write", path: path, errno: code) }
            throw error
        }
        close(fd)
        lock.withLock {
            staged.append(digest)
            stagedSet.insert(digest)
            stagedBytes += Int64(frame.count)
        }
    }

    /// Moves every staged chunk into the store and makes the chunks and the renames durable, then
    /// removes the staging directory. Only after this may an index that
    /// names these chunks be committed; the writer stays registered until `release()`, after that
    /// commit (a collection in between must not take the new chunks for garbage).
    public func commit() throws {
        // The staged files' data and inodes first (one syncfs: an fsync per 4 MiB file cost a journal
        // commit each and stalled every write of the stream on ext4), then the renames, then those.
        try syncFileSystem()
        var touched = Set<String>()
        for digest in staged {
            let source = directory + "/" + digest.hex
            let target = store.chunkPath(digest)
            let fanOut = (target as NSString).deletingLastPathComponent
            if !touched.contains(fanOut) {
                try Files.makeDirectory(fanOut, mode: 0o700)
                touched.insert(fanOut)
            }
            guard rename(directory + "/" + digest.hex, target) == 0 else { throw SystemError("rename", path: target) }
        }
        try syncFileSystem()
        staged = []
        stagedSet = []
        Files.removeTree(directory)
    }

    /// syncfs(2) of the store's file system (Linux ≥ 5.8 reports writeback errors through it).
    private func syncFileSystem() throws {
        let fd = open(store.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: store.root) }
        defer { close(fd) }
        guard bvm_syncfs(fd) == 0 else { throw SystemError("syncfs", path: store.root) }
    }

    /// Makes a backup that names `referenced` visible (`publish`: the rename of its directory) only if
    /// every one of those chunks is in the store at that moment, under the store's commit lock (shared):
    /// a garbage collection's sweep and a quarantine move chunks away only under the same lock held
    /// exclusively, so a chunk checked here cannot vanish before the backup is visible (and once it is,
    /// the collector reads its index, and a quarantine marks it). Call after `commit()`.
    public func publish<T>(referencing referenced: Set<ChunkDigest>, _ publish: () throws -> T) throws -> T {
        let lock = try FileLock.acquire(store.commitLockPath, shared: true)
        defer { lock.release() }
        let gone = referenced.filter { !store.contains($0) }
        guard gone.isEmpty else {
            throw ChunkStagingError.chunksGone(gone.map { store.chunkPath($0) }.sorted())
        }
        return try publish()
    }

    /// The job's backup is committed (or given up): the writer's registration ends.
    public func release() { writer.release() }

    /// Removes the staging directory and whatever is in it, and ends the writer's registration.
    public func discard() {
        Files.removeTree(directory)
        writer.release()
    }
}

public enum ChunkStagingError: Error, CustomStringConvertible, Equatable {
    /// Chunks the backup found in the store were quarantined (found damaged) or removed while it ran.
    case chunksGone([String])

    public var description: String {
        switch self {
        case .chunksGone(let paths):
            let shown =
                paths.prefix(3).joined(separator: ", ") + (paths.count > 3 ? " and \(paths.count - 3) more" : "")
            return "chunks this backup names left the store while it ran (found damaged and quarantined, or"
                + " removed): \(shown); nothing was committed, the next backup sends them again"
        }
    }
}
