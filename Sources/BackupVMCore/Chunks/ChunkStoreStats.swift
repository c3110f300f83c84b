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
    /// Chunks found damaged and moved aside (ChunkQuarantine).
    public var quarantined = 0

    /// Logical bytes per stored byte (zeros, compression and sharing together).
    public var dedupRatio: Double { storedBytes == 0 ? 0 : Double(logicalBytes) / Double(storedBytes) }

    /// Fails on what it cannot read (a listing, a manifest): a figure that left something out silently
    /// would be a wrong one.
    public static func measure(storage: String) throws -> ChunkStoreStats {
        var stats = ChunkStoreStats()
        let store = ChunkStore(storage: storage)
        if Files.exists(store.root) {
            try store.forEachChunk { _, _, st in
                stats.chunks += 1
                stats.storedBytes += Int64(st.st_size)
            }
        }
        stats.quarantined = ChunkQuarantine(store: store).count()
        let catalog = BackupCatalog(storage: storage)
        for vm in try Files.visibleEntries(storage) {
            for backup in catalog.backups(of: vm) {
                let manifest = try Manifest.read(backupDirectory: backup.path)
                let chunked = manifest.disks.filter { $0.chunks != nil }
                guard !chunked.isEmpty else { continue }
                stats.backups += 1
                stats.logicalBytes += chunked.reduce(0) { $0 + $1.rawBytes }
            }
        }
        return stats
    }
}
