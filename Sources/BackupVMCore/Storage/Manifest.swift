import Foundation

/// The machine-readable record of one backup, written as `manifest` (JSON) by the commit, last:
/// a backup directory with a manifest is complete. Enough to restore and verify without the tool:
/// each image is `lzop -d`/`zstd -d`-able and its checksums are here.
public struct Manifest: Codable, Sendable, Equatable {
    public struct StoredImage: Codable, Sendable, Equatable {
        /// Guest device (vda), or "ram" for the saved RAM state.
        public var target: String
        /// Where it came from on the hypervisor.
        public var source: String
        public var kind: DomainDisk.Kind?
        public var format: DomainDisk.Format?
        /// File name in the backup directory.
        public var file: String
        /// Uncompressed size (the source's size on the hypervisor). The content is covered by the
        /// compressed format's own checksums (lzop Adler-32 per block, zstd frame checksum).
        public var rawBytes: Int64
        /// Stored (compressed) size, POSIX `cksum` CRC (computed on the hypervisor and on this server
        /// during the transfer and compared: `cksum FILE` prints it) and SHA-256 (this server).
        public var storedBytes: Int64
        public var storedCksum: UInt32
        public var storedSHA256: String
        /// An LV disk's volume as LVM named it at the backup (`vg/lv`), whichever path the domain
        /// used for it (/dev/vg/lv or /dev/mapper/vg-lv). Absent for other disks; in manifests of
        /// format 1 also for LVs (a restore then asks the hypervisor what the path is).
        public var volume: String? = nil
        /// The format of the stored stream when it is not the disk's own: a live backup stores every
        /// disk's guest-visible content (raw), also of a qcow2 disk, which a restore converts back.
        /// Absent: the stream is the disk as it is on the hypervisor (`format`).
        public var content: DomainDisk.Format? = nil
        /// Store=chunks: `file` is the disk's chunk index (`vda.index`; storedBytes, storedCksum and
        /// storedSHA256 are the index file's), and what the transfer moved and added to the store.
        public var chunks: ChunkedImage? = nil

        /// What decompressing the stored file gives.
        public var storedContent: DomainDisk.Format? { content ?? format }

        /// The LV this image was taken from; nil for files and block devices that are not LVs.
        public var volumeName: VolumeName? { volume.flatMap(VolumeName.init(fullName:)) }
    }

    /// One disk stored in the chunk store (docs/chunk-store.md).
    public struct ChunkedImage: Codable, Sendable, Equatable {
        /// Chunks in the index, and how many of them are all zeros (never stored).
        public var chunks: Int
        public var zeroChunks: Int
        /// Chunks this backup added to the store, and their compressed size.
        public var newChunks: Int
        public var newStoredBytes: Int64
        /// Bytes that crossed the wire for this disk (frames, digests and new chunks).
        public var wireBytes: Int64
    }

    public struct ExcludedDisk: Codable, Sendable, Equatable {
        public var target: String
        public var source: String
    }

    /// 4: Store=chunks (images may be chunk indexes, `chunks`); 3: live backups (images record their `content`, the backup its `consistency`); 2: disk images
    /// record their LV (`volume`); 1 did not.
    public var formatVersion = 4
    public var vm: String
    public var id: String
    public var host: String
    /// cold or hot as performed; `requestedMode` is what the profile asked for.
    public var mode: SnapshotMode
    public var requestedMode: SnapshotMode
    public var modeNote: String?
    public var priorState: DomainState
    public var compression: Compression
    public var started: String
    public var finished: String
    public var durationSeconds: Double
    /// How long the VM was not running because of this backup (0 for live backups).
    public var downtimeSeconds: Double
    public var disks: [StoredImage]
    public var excluded: [ExcludedDisk]
    public var ramState: StoredImage?
    public var domainXML: String
    public var keptOnHost: Bool
    /// Order of this VM's backups as they were committed (1, 2, ...), independent of the clock: IDs
    /// are wall-clock times, and a clock set back would make the newest backup look oldest. Absent in
    /// manifests of older versions (those sort before every numbered one, by ID).
    public var sequence: Int?
    /// Live backups: application (the guest agent froze the file systems as the job began, for
    /// `quiesceSeconds`) or crash (no agent; the sysrq emergency sync was sent first).
    public var consistency: Consistency? = nil
    public var quiesceSeconds: Double? = nil
    /// How the disks are stored: absent or `files` (one compressed file each), or `chunks`.
    public var store: StoreFormat? = nil

    /// What this backup stored: its files, and for chunk images the chunks it added to the store
    /// (shared chunks are counted by the backup that first stored them; `store-stats` has the whole).
    public var storedBytes: Int64 {
        disks.reduce(0) { $0 + $1.storedBytes + ($1.chunks?.newStoredBytes ?? 0) } + (ramState?.storedBytes ?? 0)
    }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    public static func decode(_ data: Data) throws -> Manifest { try JSONDecoder().decode(Manifest.self, from: data) }

    public static func read(backupDirectory dir: String) throws -> Manifest {
        try decode(Data(contentsOf: URL(fileURLWithPath: dir + "/" + BackupNames.manifest)))
    }
}

// The manifest's enumerations are stored as their raw values ("cold", "shut off", "lzop"): the JSON
// is the same as when they were plain strings.
extension SnapshotMode: Codable {}
extension Compression: Codable {}
