import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Writes backups into BackupStorage/VM/: a backup is assembled in `.ID.partial/` and becomes visible
/// as `ID/` by one rename after its manifest is written and everything is fsynced. Temporary names
/// start with a dot: `list`, `verify`, rotation and the cron tick never see them.
public struct BackupStore: Sendable {
    public let storage: String

    public init(storage: String) { self.storage = storage }

    public var catalog: BackupCatalog { BackupCatalog(storage: storage) }

    public var layout: StorageLayout { StorageLayout(storage: storage) }
    public func vmDirectory(_ vm: String) -> String { layout.vmDirectory(vm) }
    public func partialDirectory(_ vm: String, id: String) -> String { layout.partialDirectory(vm, id: id) }

    /// A backup ID for a backup starting at `started` that this VM has not used yet (IDs are start
    /// times to the second; a second backup within the same second takes the next free second).
    public func newID(vm: String, started: Date) -> String {
        var t = started
        while true {
            let id = Timestamps.compact(t)
            if !Files.exists(layout.backupDirectory(vm, id: id)) && !Files.exists(partialDirectory(vm, id: id)) {
                return id
            }
            t = t.addingTimeInterval(1)
        }
    }

    /// Creates the partial directory (0700; the storage holds full copies of every disk).
    public func beginBackup(vm: String, id: String) throws -> String {
        try Files.makeDirectory(storage, mode: 0o700)
        try Files.makeDirectory(vmDirectory(vm), mode: 0o700, enforceMode: true)
        let dir = partialDirectory(vm, id: id)
        if Files.exists(dir) { try FileManager.default.removeItem(atPath: dir) }
        try Files.makeDirectory(dir, mode: 0o700, enforceMode: true)
        return dir
    }

    /// Writes manifest and domain.xml into the partial directory, fsyncs, renames it into place.
    public func commit(_ manifest: Manifest, partial: String) throws -> String {
        try write(Data(manifest.domainXML.utf8), to: partial + "/" + BackupNames.domainXML)
        try write(try manifest.encoded(), to: partial + "/" + BackupNames.manifest)
        Files.syncDirectory(partial)
        let final = layout.backupDirectory(manifest.vm, id: manifest.id)
        guard rename(partial, final) == 0 else { throw SystemError("rename into place", path: final) }
        Files.syncDirectory(vmDirectory(manifest.vm))
        return final
    }

    public func discard(partial: String) {
        try? FileManager.default.removeItem(atPath: partial)
    }

    /// Empties a partial directory but for the file `kept` (a breadcrumb that recovery still needs).
    public func discard(partial: String, keeping kept: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: partial)) ?? [] where name != kept {
            try? FileManager.default.removeItem(atPath: partial + "/" + name)
        }
    }

    /// Keeps the newest `keep` committed backups of exactly this VM; returns the IDs removed. Runs only
    /// after a successful commit, so a failed backup never costs a good one.
    @discardableResult
    public func rotate(vm: String, keep: Int) throws -> [String] {
        // A manifest that cannot be read would sort as the oldest and be removed first: rotation
        // stops instead (the new backup stands; the job is done with a warning).
        let backups = try inCommitOrderOrThrow(vm)
        guard backups.count > keep else { return [] }
        var removed: [String] = []
        for old in backups.prefix(backups.count - keep) {
            // Rename first, so a crash mid-delete leaves a dot-directory, never a half backup.
            let doomed = layout.deletingDirectory(vm, id: old.id)
            guard rename(old.path, doomed) == 0 else { throw SystemError("rename for removal", path: old.path) }
            try FileManager.default.removeItem(atPath: doomed)
            removed.append(old.id)
        }
        return removed
    }

    /// The same, failing on a manifest that cannot be read (rotation must not guess an order).
    func inCommitOrderOrThrow(_ vm: String) throws -> [BackupRef] {
        let keyed = try catalog.backups(of: vm).map { ref in
            do { return (ref, try Manifest.read(backupDirectory: ref.path).sequence ?? 0) } catch {
                throw SystemError(
                    "read the manifest (\(error); rotation of \(vm) stopped: fix or remove that backup)",
                    path: ref.path + "/" + BackupNames.manifest, errno: EIO)
            }
        }
        return keyed.sorted { ($0.1, $0.0.id) < ($1.1, $1.0.id) }.map(\.0)
    }

    /// Committed backups of a VM, oldest first by commit sequence (manifests without one first, by ID).
    public func inCommitOrder(_ vm: String) -> [BackupRef] {
        let keyed = catalog.backups(of: vm).map { ($0, (try? Manifest.read(backupDirectory: $0.path))?.sequence ?? 0) }
        return keyed.sorted { ($0.1, $0.0.id) < ($1.1, $1.0.id) }.map(\.0)
    }

    /// The sequence number for the next commit of this VM.
    public func nextSequence(_ vm: String) -> Int {
        let sequences = catalog.backups(of: vm).compactMap { (try? Manifest.read(backupDirectory: $0.path))?.sequence }
        return max(sequences.max() ?? 0, catalog.backups(of: vm).count) + 1
    }

    /// Backups whose ID (start time) is later than `id`: the clock went back since they were made.
    public func futureDated(_ vm: String, than id: String) -> [String] {
        catalog.backups(of: vm).map(\.id).filter { $0 > id }
    }

    /// Partial directories of a VM: backups in progress, or abandoned by a worker that died.
    public func partialDirectories(of vm: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: vmDirectory(vm))) ?? []
        return names.filter(BackupNames.isPartial).sorted().map { vmDirectory(vm) + "/" + $0 }
    }

    /// Removes dot-directories (partial or half-deleted backups) of a VM left by a dead worker.
    @discardableResult
    public func sweepTemporaries(vm: String) -> [String] {
        let dir = vmDirectory(vm)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var removed: [String] = []
        for name in names where BackupNames.isTemporary(name) {
            if (try? FileManager.default.removeItem(atPath: dir + "/" + name)) != nil { removed.append(name) }
        }
        return removed
    }

    private func write(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: path) }
        defer { close(fd) }
        try Files.writeAll(fd, [UInt8](data), path: path)
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: path) }
    }
}
