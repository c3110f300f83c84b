/// Every name this tool gives to things on disk, here and on the hypervisors, in one place (in the
/// manner of restic's repository layout): the storage folder's backup directories and their files,
/// the hypervisor's working directory with its staging and kept copies, our snapshot LVs, and the
/// compression formats' suffixes and decompressors. Code elsewhere asks this file; it never spells a
/// name itself, so a name cannot drift between the writer, the reader and the sweeper.
public enum BackupNames {
    /// The commit's last file: a backup directory with a manifest is complete.
    public static let manifest = "manifest"
    /// The persistent domain definition (`virsh dumpxml --inactive`).
    public static let domainXML = "domain.xml"
    /// The last `backup_vm verify` result.
    public static let verifyRecord = "verify.json"
    /// The chunk store of `Store=chunks`, inside BackupStorage (VM names never start with a dot).
    public static let chunkStore = ".chunks"
    /// Inside the chunk store: each running job's new chunks until its stream has checked.
    public static let chunkStaging = ".staging"
    /// Inside the chunk store: chunks a garbage collection is about to remove (moved back if a running
    /// backup named them meanwhile; everything there goes back when a collection died midway).
    public static let chunkTrash = ".trash"
    /// Inside the chunk store: chunks found damaged, moved aside (never deleted by the tool).
    public static let chunkQuarantine = ".quarantine"
    /// Inside the chunk store: taken shared by a backup's commit, exclusively by a collection's sweep
    /// and by a quarantine, so that no commit names a chunk that is moved away while it commits.
    public static let chunkCommitLock = ".commit.lock"
    /// Inside the chunk store: one garbage collection at a time.
    public static let chunkCollectionLock = ".gc.lock"
    /// One disk of a backup in the chunk store: `vda.index` (the list of its chunks).
    public static func chunkIndex(target: String) -> String { "\(target).index" }
    /// What a running backup remembers for its own recovery (inside its partial directory).
    public static let breadcrumb = "job-state.json"
    /// The saved RAM state on the hypervisor (`virsh save` target), inside the staging directory.
    public static let ramState = "ram.save"
    /// Marks our LVM snapshots: `LV-bvmsnap-ID`. Nothing without it is ever removed as ours.
    public static let snapshotMarker = "-bvmsnap-"

    /// A backup directory in progress (never listed; removed on failure).
    public static func partial(_ id: String) -> String { ".\(id).partial" }
    /// A backup being removed by rotation (renamed first, so a crash never leaves half a backup).
    public static func deleting(_ id: String) -> String { ".\(id).deleting" }
    /// Is this a temporary directory of ours (partial or half-deleted backup)?
    public static func isTemporary(_ name: String) -> Bool {
        name.hasPrefix(".") && (name.hasSuffix(".partial") || name.hasSuffix(".deleting"))
    }
    public static func isPartial(_ name: String) -> Bool { name.hasPrefix(".") && name.hasSuffix(".partial") }
    /// The backup ID of a partial directory's name (`.ID.partial`).
    public static func partialID(_ name: String) -> String? {
        isPartial(name) ? String(name.dropFirst().dropLast(".partial".count)) : nil
    }

    /// The stored image of one disk: `vda.raw.lzo`.
    public static func image(target: String, format: DomainDisk.Format, compression: Compression) -> String {
        "\(target).\(format.rawValue).\(compression.fileExtension)"
    }
    /// The stored RAM state: `ram.save.lzo`.
    public static func ramImage(compression: Compression) -> String { "\(ramState).\(compression.fileExtension)" }

    /// Our snapshot of `lv` for backup `id` (LVM names are case-sensitive; IDs are lowered).
    public static func snapshotLV(of lv: String, id: String) -> String { lv + snapshotMarker + id.lowercased() }
    public static func isOurSnapshot(_ lv: String) -> Bool { lv.contains(snapshotMarker) }

    /// A restore writes each LV into a new LV beside it, `LV-bvmrestore-ID` (ID: the restore's start),
    /// and swaps it in only once it is complete and checked. A leftover of an interrupted restore
    /// holds nothing but a copy of a backup.
    public static let restoringMarker = "-bvmrestore-"
    /// The LV a restore swapped out, `LV-bvmreplaced-ID`: kept until every disk of the restore is in
    /// place and the domain is defined, then removed. A leftover holds the disk as it was before.
    public static let replacedMarker = "-bvmreplaced-"

    public static func restoringLV(of lv: String, id: String) -> String { lv + restoringMarker + id.lowercased() }
    public static func replacedLV(of lv: String, id: String) -> String { lv + replacedMarker + id.lowercased() }
    /// A new or replaced LV of a restore, never anyone else's: only these are ever removed by one.
    public static func isOurRestoreLV(_ lv: String) -> Bool {
        lv.contains(restoringMarker) || lv.contains(replacedMarker)
    }

    /// The same for a file disk: `PATH.bvmrestore-ID` is written and checked, then renamed over the
    /// disk; `PATH.bvmreplaced-ID` is a second link to the file it replaced, until the restore is through.
    public static func restoringFile(_ path: String, id: String) -> String { path + ".bvmrestore-" + id.lowercased() }
    public static func replacedFile(_ path: String, id: String) -> String { path + ".bvmreplaced-" + id.lowercased() }
}

/// The storage folder on this server: `BackupStorage/VM/ID/` per committed backup.
public struct StorageLayout: Sendable, Equatable {
    public let storage: String

    public init(storage: String) { self.storage = storage }

    public func vmDirectory(_ vm: String) -> String { storage + "/" + vm }
    public func backupDirectory(_ vm: String, id: String) -> String { vmDirectory(vm) + "/" + id }
    public func partialDirectory(_ vm: String, id: String) -> String {
        vmDirectory(vm) + "/" + BackupNames.partial(id)
    }
    public func deletingDirectory(_ vm: String, id: String) -> String {
        vmDirectory(vm) + "/" + BackupNames.deleting(id)
    }
}

/// A VM's working directory on its hypervisor, `WorkPath/VM/`: the staging directory of the backup
/// in progress (`.ID.partial/`, holding the RAM state and, with keep-on-host, the compressed copies),
/// the kept copy of the newest backup (`ID/`) and the RAM file of a `restore --with-ram`.
public struct WorkLayout: Sendable, Equatable {
    public let directory: String
    /// WorkPath itself (the chunk store's helper lives there, shared by every VM of the host).
    public let workPath: String

    public init(workPath: String, vm: String) {
        self.workPath = workPath
        directory = workPath + "/" + vm
    }

    public func stagingDirectory(_ id: String) -> String { directory + "/" + BackupNames.partial(id) }
    public func ramFile(_ id: String) -> String { stagingDirectory(id) + "/" + BackupNames.ramState }
    public func stagedImage(_ id: String, file: String) -> String { stagingDirectory(id) + "/" + file }
    public func keptCopy(_ id: String) -> String { directory + "/" + id }
    /// A live backup's job directory (`.ID.live/`): libvirt's NBD socket and the scratch files of the
    /// copy-before-write blocks, owned by the qemu user while the job runs. Short on purpose: a unix
    /// socket's path holds at most 107 bytes.
    public func liveDirectory(_ id: String) -> String { directory + "/.\(id).live" }
    public func restoreRAMFile(_ id: String) -> String { directory + "/restore-\(id).\(BackupNames.ramState)" }

    /// Shell globs (unquoted, after the quoted directory) matching only names of ours: kept copies
    /// (IDs, `YYYYMMDDTHHMMSSZ`) and staging directories.
    public static let keptCopyGlob = "[0-9]*T[0-9]*Z"
    public static let stagingGlob = ".[0-9]*T[0-9]*Z.partial"
}

extension Compression {
    /// The format of a stored file, from its name (`vda.raw.zst` is zstd; anything else lzop, the
    /// seed's format).
    public init(storedFileName name: String) { self = name.hasSuffix(".zst") ? .zstd : .lzop }

    /// The program that decompresses this format (on this server or a hypervisor).
    public var tool: String { rawValue }

    /// Compresses stdin to stdout at `level`.
    public func compressCommand(level: Int) -> String {
        switch self {
        case .lzop: return "lzop -\(level) -c"
        case .zstd: return "zstd -q -\(level) -T0 -c"
        }
    }

    /// Decompresses stdin (or the files given) to stdout, checking the format's own checksums.
    public var decompressCommand: String {
        switch self {
        case .lzop: return "lzop -dc"
        case .zstd: return "zstd -q -dc"
        }
    }
}
