import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm gc`: removes chunks no backup uses any more (Store=chunks).
struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove chunks of the chunk store that no backup uses (Store=chunks).",
        discussion: """
            Safe while backups run: chunks a running backup may use are kept (see the README, "The chunk \
            store"). Exit 0 when done, 1 when it could not run (another gc runs, an index is unreadable).
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        do {
            let r = try ChunkCollector(storage: configuration.main.backupStorage).collect()
            print(
                "gc: \(r.indexes) indexes name \(r.referenced) chunks; \(r.chunks) chunks in the store; removed"
                    + " \(r.removed) (\(ByteCount(r.removedBytes))); kept \(r.keptForWriters) that running backups"
                    + " named meanwhile; \(r.runningWriters) backups running; \(r.abandonedStagings) abandoned stagings"
                    + " removed"
                    + (r.restoredFromTrash > 0
                        ? "; \(r.restoredFromTrash) chunks put back from the trash"
                            + " of a collection that died" : ""))
        } catch {
            FileHandle.standardError.write(Data("backup_vm gc: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `backup_vm store-stats`: what the chunk store holds and protects.
struct StoreStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store-stats",
        abstract: "Chunks, bytes stored, bytes protected and the dedup ratio of the chunk store.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let s: ChunkStoreStats
        do { s = try ChunkStoreStats.measure(storage: configuration.main.backupStorage) } catch {
            FileHandle.standardError.write(Data("backup_vm store-stats: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print("chunks: \(s.chunks)")
        print("stored: \(ByteCount(s.storedBytes))")
        print("protected: \(ByteCount(s.logicalBytes)) in \(s.backups) backups")
        print("dedup ratio: \(String(format: "%.2f", s.dedupRatio))")
        if s.quarantined > 0 {
            print("quarantined: \(s.quarantined) damaged chunks in .chunks/.quarantine (moved aside; see verify)")
        }
    }
}
