import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What the chunk store holds and what it protects (`backup_vm store-stats`).
public struct ChunkStoreStats: Sendable, Equatable {
    /// Chunk files and their (compressed) bytes.
    public var chunks = 0
    public var storedBytes: Int64 = 0
    /// Committed backups with chunk images, and the disk bytes they hold (each backup counted whole).
    public var backups = 0
    public var logicalBytes: Int64 = 0

    /// Logical bytes per stored byte (zeros, compression and sharing together).
    public var dedupRatio: Double { storedBytes == 0 ? 0 : Double(logicalBytes) / Double(storedBytes) }

    public static func measure(storage: String) -> ChunkStoreStats {
        var stats = ChunkStoreStats()
        ChunkStore(storage: storage).forEachChunk { _, _, st in
            stats.chunks += 1
            stats.storedBytes += Int64(st.st_size)
        }
        let catalog = BackupCatalog(storage: storage)
        for vm in (try? Files.visibleEntries(storage)) ?? [] {
            for backup in catalog.backups(of: vm) {
                guard let manifest = try? Manifest.read(backupDirectory: backup.path) else { continue }
                let chunked = manifest.disks.filter { $0.chunks != nil }
                guard !chunked.isEmpty else { continue }
                stats.backups += 1
                stats.logicalBytes += chunked.reduce(0) { $0 + $1.rawBytes }
            }
        }
        return stats
    }
}
