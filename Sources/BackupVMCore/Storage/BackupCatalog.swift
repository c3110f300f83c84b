import Foundation

/// One committed backup of a VM: `BackupStorage/VM/ID/` with a manifest. IDs are UTC timestamps of
/// the backup's start (`20261127T221500Z`), so they sort by age. Directories starting with a dot are
/// temporary (a backup in progress or abandoned) and are never listed as backups.
public struct BackupRef: Sendable, Equatable {
    public let vm: String
    public let id: String
    public let started: Date
    public let path: String
}

/// Reads the storage folder.
public struct BackupCatalog: Sendable {
    public let storage: String

    public init(storage: String) { self.storage = storage }

    public func directory(of vm: String) -> String { StorageLayout(storage: storage).vmDirectory(vm) }

    /// Committed backups of exactly this VM, oldest first. Only directories that hold a manifest
    /// count: the manifest is written last, by the commit.
    public func backups(of vm: String) -> [BackupRef] {
        let dir = directory(of: vm)
        let names = (try? Files.visibleEntries(dir)) ?? []
        return names.compactMap { name -> BackupRef? in
            guard let date = Timestamps.parseCompact(Substring(name)) else { return nil }
            let path = dir + "/" + name
            guard Files.exists(path + "/" + BackupNames.manifest) else { return nil }
            return BackupRef(vm: vm, id: name, started: date, path: path)
        }.sorted { $0.id < $1.id }
    }

    public func newestBackup(of vm: String) -> BackupRef? { backups(of: vm).last }
}
