import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The chunk store's garbage collector (`backup_vm gc`, and after a job's rotation removed backups).
///
/// Mark: every index in every backup directory of the storage folder (committed or partial; only
/// backups being deleted are left out) names the chunks in use; an index that cannot be read stops the
/// collection before anything is removed. Sweep: a chunk is removed only if no index names it *and*
/// it is older than the cutoff: the start of the oldest running writer (a job registered in
/// `.staging/JOB.writer` under a held flock), or of this collection if none runs, less a margin.
/// A running job touches every chunk it reuses and writes its new ones after its start, so every
/// chunk it will name is younger than the cutoff: a collection never breaks a backup in progress.
/// A collection killed at any point has only removed unreferenced chunks: every committed backup
/// still restores. Writers that died are unregistered and their staging directories removed.
public struct ChunkCollector {
    public struct Report: Sendable, Equatable {
        public var indexes = 0
        public var referenced = 0
        public var chunks = 0
        public var removed = 0
        public var removedBytes: Int64 = 0
        /// Unreferenced chunks kept because they are younger than the cutoff.
        public var keptYoung = 0
        public var runningWriters = 0
        public var abandonedStagings = 0
    }

    public let storage: String
    /// Seconds the cutoff lies before the oldest writer's start: file times and clocks are coarse.
    public var margin: TimeInterval = 60

    public init(storage: String) { self.storage = storage }

    var store: ChunkStore { ChunkStore(storage: storage) }

    public func collect(now: Date = Date()) throws -> Report {
        let store = self.store
        guard Files.exists(store.root) else { return Report() }
        let lockPath = store.root + "/.gc.lock"
        let lockFD = open(lockPath, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockFD >= 0 else { throw SystemError("create", path: lockPath) }
        defer { close(lockFD) }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else { throw ChunkCollectorError.busy(lock: lockPath) }

        var report = Report()
        // The writers first: anyone registering after this looks started after `now`.
        var cutoff = now
        for writer in try writers() {
            if let started = writer.runningSince {
                report.runningWriters += 1
                cutoff = min(cutoff, started)
            } else {
                Files.removeTree(store.stagingRoot + "/" + writer.job)
                unlink(writer.path)
                report.abandonedStagings += 1
            }
        }
        cutoff = cutoff.addingTimeInterval(-margin)
        let inUse = try mark(&report)
        report.referenced = inUse.count
        sweep(inUse, cutoff: cutoff, &report)
        return report
    }

    /// Every chunk named by an index of a backup directory.
    func mark(_ report: inout Report) throws -> Set<ChunkDigest> {
        var inUse = Set<ChunkDigest>()
        for vm in (try? Files.visibleEntries(storage)) ?? [] {
            let vmDir = storage + "/" + vm
            for name in (try? FileManager.default.contentsOfDirectory(atPath: vmDir)) ?? []
            where !name.hasSuffix(".deleting") {
                let dir = vmDir + "/" + name
                for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                where file.hasSuffix(".index") {
                    let path = dir + "/" + file
                    guard let bytes = Files.readRegularFile(path, limit: 1 << 30) else { continue }
                    do {
                        inUse.formUnion(try ChunkIndex.parse(bytes, file: path).digests)
                    } catch {
                        throw ChunkCollectorError.unreadableIndex("\(error)")
                    }
                    report.indexes += 1
                }
            }
        }
        return inUse
    }

    func sweep(_ inUse: Set<ChunkDigest>, cutoff: Date, _ report: inout Report) {
        store.forEachChunk { digest, path, st in
            report.chunks += 1
            if inUse.contains(digest) { return }
            let mtime = Date(
                timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
            if mtime >= cutoff {
                report.keptYoung += 1
            } else if unlink(path) == 0 {
                report.removed += 1
                report.removedBytes += Int64(st.st_size)
            }
        }
    }

    struct Writer {
        let job: String
        let path: String
        /// Its start if it still runs (its flock is held); nil for a writer that died.
        let runningSince: Date?
    }

    func writers() throws -> [Writer] {
        let stagingRoot = store.stagingRoot
        var found: [Writer] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: stagingRoot)) ?? []
        where name.hasSuffix(ChunkStore.writerSuffix) {
            let path = stagingRoot + "/" + name
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            let job = String(name.dropLast(ChunkStore.writerSuffix.count))
            if flock(fd, LOCK_SH | LOCK_NB) == 0 {
                found.append(Writer(job: job, path: path, runningSince: nil))
            } else {
                var st = stat()
                _ = fstat(fd, &st)
                let started = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))
                found.append(Writer(job: job, path: path, runningSince: started))
            }
        }
        return found
    }
}

public enum ChunkCollectorError: Error, CustomStringConvertible, Equatable {
    case busy(lock: String)
    case unreadableIndex(String)

    public var description: String {
        switch self {
        case .busy(let lock): return "another garbage collection runs (\(lock) is locked)"
        case .unreadableIndex(let why):
            return "garbage collection stopped before removing anything: \(why) (an index that cannot be read"
                + " could name any chunk; fix or remove that backup first)"
        }
    }
}
