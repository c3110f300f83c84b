import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The chunk store's garbage collector (`backup_vm gc`, and after a job's rotation removed backups).
///
/// Mark: every index of every backup directory (BackupIndexWalk: committed or partial; only backups
/// being deleted are left out), and every chunk a running backup has named so far (its registration,
/// WriterRegistration). Anything it cannot read stops it before a removal (fail closed).
///
/// Sweep, without clocks: the unmarked chunks are first moved into `.trash/`, out of reach, under the
/// store's commit lock held exclusively; then the collector reads again what may have changed since
/// its mark (every running backup's registration, and the backup directories committed since) and
/// puts back every chunk named there; only then are the others removed. A backup names a chunk in its
/// registration before it looks for the chunk in the store: if it looked before the move, the second
/// reading sees the name and the chunk goes back; if after, it found the chunk gone and sends it
/// again. A backup commits (checks that its chunks are there, renames its directory into place) under
/// the commit lock shared, so never while chunks are in the trash. File times play no part: a clock
/// stepped back or forward cannot make a chunk in use look old (they did before: the cutoff compared
/// a writer's start with the times it touched chunks at).
///
/// A collection killed at any point has removed only chunks that nothing named; what it left in the
/// trash goes back into the store at the next collection, the next backup, or the next read that
/// misses a chunk (ChunkStore.recoverAbandonedSweep). Writers that died are unregistered and their
/// staging directories removed.
public struct ChunkCollector {
    public struct Report: Sendable, Equatable {
        public var indexes = 0
        public var referenced = 0
        public var chunks = 0
        public var removed = 0
        public var removedBytes: Int64 = 0
        /// Unreferenced at the mark, but named by a running backup before the sweep: kept.
        public var keptForWriters = 0
        public var runningWriters = 0
        public var abandonedStagings = 0
        /// Chunks a collection that died had left in the trash, put back first.
        public var restoredFromTrash = 0
    }

    public let storage: String

    /// Tests: called after the unmarked chunks were chosen, before any is moved (a backup naming one
    /// of them right now must keep it).
    var beforeSweep: ((Set<ChunkDigest>) throws -> Void)? = nil

    /// How backup directories and their indexes are read (the tests make it fail).
    var indexWalk: BackupIndexWalk

    public init(storage: String) {
        self.storage = storage
        indexWalk = BackupIndexWalk(storage: storage)
    }

    var store: ChunkStore { ChunkStore(storage: storage) }

    public func collect() throws -> Report {
        let store = self.store
        guard Files.exists(store.root) else { return Report() }
        guard let lock = try FileLock.tryAcquire(store.collectionLockPath) else {
            throw ChunkCollectorError.busy(lock: store.collectionLockPath)
        }
        defer { lock.release() }
        var report = Report()
        report.restoredFromTrash = ChunkTrash(store: store).restoreAll()
        let (writers, abandoned) = try liveWriters()
        report.runningWriters = writers.count
        report.abandonedStagings = abandoned
        var inUse = try references(of: writers)
        let backups = try failClosed { try indexWalk.indexes() }
        for backup in backups { inUse.formUnion(backup.digests) }
        report.indexes = backups.count
        report.referenced = inUse.count
        var unmarked = Set<ChunkDigest>()
        try failClosed {
            try store.forEachChunk { digest, _, _ in
                report.chunks += 1
                if !inUse.contains(digest) { unmarked.insert(digest) }
            }
        }
        try beforeSweep?(unmarked)
        try sweep(unmarked, seen: Set(backups.map(\.directory)), &report)
        return report
    }

    /// Moves the unmarked chunks into the trash, reads what running and newly committed backups name
    /// now, puts those back and removes the rest.
    private func sweep(_ unmarked: Set<ChunkDigest>, seen: Set<String>, _ report: inout Report) throws {
        guard !unmarked.isEmpty else { return }
        let trash = ChunkTrash(store: store)
        let commitLock = try FileLock.acquire(store.commitLockPath, shared: false)
        var taken: [ChunkDigest] = []
        do {
            for digest in unmarked.sorted(by: { $0.hex < $1.hex }) where try trash.take(digest) {
                taken.append(digest)
            }
            var named = try references(of: try liveWriters(removingAbandoned: false).writers)
            for backup in try failClosed({ try indexWalk.indexes(skipping: seen) }) {
                named.formUnion(backup.digests)
            }
            for digest in taken where named.contains(digest) {
                try trash.putBack(digest)
                report.keptForWriters += 1
            }
        } catch {
            // Whatever stopped it, nothing is removed: every chunk goes back.
            for digest in taken { try? trash.putBack(digest) }
            commitLock.release()
            throw error
        }
        commitLock.release()
        let emptied = trash.empty()
        report.removed = emptied.count
        report.removedBytes = emptied.bytes
    }

    /// The registrations of running backups; dead writers' registrations and stagings removed (when
    /// asked). A staging directory listing that fails is an error.
    func liveWriters(removingAbandoned: Bool = true) throws -> (writers: [String], abandoned: Int) {
        let stagingRoot = store.stagingRoot
        let names: [String]
        do { names = try Files.entries(stagingRoot) } catch let e as SystemError where e.errno == ENOENT {
            return ([], 0)
        } catch {
            throw ChunkCollectorError.unreadable("\(error)")
        }
        var live: [String] = []
        var abandoned = 0
        for name in names where name.hasSuffix(ChunkStore.writerSuffix) {
            let path = stagingRoot + "/" + name
            if WriterRegistration.isAbandoned(path) {
                guard removingAbandoned else { continue }
                Files.removeTree(stagingRoot + "/" + String(name.dropLast(ChunkStore.writerSuffix.count)))
                unlink(path)
                abandoned += 1
            } else {
                live.append(path)
            }
        }
        return (live, abandoned)
    }

    /// Every chunk the given registrations name; one that cannot be read stops the collection (a
    /// registration gone meanwhile is a writer that finished: its backup is committed or given up).
    func references(of registrations: [String]) throws -> Set<ChunkDigest> {
        var named = Set<ChunkDigest>()
        for path in registrations {
            do {
                named.formUnion(try WriterRegistration.references(in: path))
            } catch let e as SystemError where e.errno == ENOENT {
                continue
            } catch {
                throw ChunkCollectorError.unreadable("the running backup's registration \(path): \(error)")
            }
        }
        return named
    }

    private func failClosed<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ChunkCollectorError { throw e } catch {
            throw ChunkCollectorError.unreadable("\(error)")
        }
    }
}

public enum ChunkCollectorError: Error, CustomStringConvertible, Equatable {
    case busy(lock: String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .busy(let lock): return "another garbage collection runs (\(lock) is locked)"
        case .unreadable(let why):
            return "garbage collection stopped before removing anything: \(why) (what cannot be read could name any"
                + " chunk; fix it, or remove that backup, first)"
        }
    }
}
