/// What the stages of a backup ask of the hypervisor a VM runs on. The real one (SSHHypervisor) runs
/// virsh, LVM and the streaming script over one shared ssh connection; the tests drive the same
/// stages through a scripted one that records every call and fails wherever it is told to. Every
/// method may block on the network: the pipeline calls them from a job's own thread.
///
/// Names reaching these methods (VM, LV, paths) have been validated (SafeName, DomainXML) and are
/// quoted by the implementation.
public protocol Hypervisor: Sendable {
    /// The host's name as HostServers spells it.
    var name: String { get }

    /// The domain's state and its live and persistent XML; nil when it is not defined here.
    func inspect(_ vm: String) throws -> DomainInspection?
    /// The domain's state; nil when it is not defined here.
    func state(_ vm: String) throws -> DomainState?
    /// The domain's state with libvirt's reason for it (`paused (I/O error)`); nil when not defined.
    func condition(_ vm: String) throws -> DomainCondition?
    /// Resumes a paused domain.
    func resume(_ vm: String) throws

    /// Where each of these block device paths leads and which are LVs (a device missing from the
    /// answer, or without a volume, is a plain block device).
    func blockDevices(_ devices: [String]) throws -> [String: BlockDevice]

    /// The backing file named in the header of each of these qcow2 images that has one (an overlay);
    /// images without a backing file are missing from the answer.
    func qcow2BackingFiles(_ images: [String]) throws -> [String: String]

    /// Sends the ACPI power-button request.
    func shutdown(_ vm: String) throws
    /// Forces the domain off.
    func destroy(_ vm: String) throws
    func start(_ vm: String) throws
    /// Saves the RAM state to `file` (on the hypervisor) and stops the domain.
    func save(_ vm: String, to file: String) throws
    /// Brings a saved domain back, running or paused.
    func restore(from file: String, paused: Bool) throws
    /// The sysrq emergency sync (guests need kernel.sysrq=1), then a moment for it to finish.
    func sendEmergencySync(_ vm: String) throws

    /// Creates `snapshot` (our name) of `origin`, sized `size` (`N%` of the origin or like `2G`).
    func createSnapshot(_ snapshot: LogicalVolume, of origin: LogicalVolume, size: String) throws
    /// Is the snapshot still usable (not overflowed)?
    func snapshotStatus(_ snapshot: LogicalVolume) throws -> SnapshotStatus
    /// Removes a snapshot of ours (retrying while it is briefly in use); nothing when it is gone.
    func removeSnapshot(_ snapshot: LogicalVolume) throws
    /// Snapshots of ours (by name) of these origins that still exist: leftovers of a killed job.
    func leftoverSnapshots(of origins: [LogicalVolume]) throws -> [LogicalVolume]

    /// Checks that the working path and every directory above it belong to root and can be written by
    /// nobody else (WorkPathGuard: what root runs and writes there must not be swapped), then creates
    /// `path` (and its parents) in it, if given.
    func makeDirectory(_ path: String?, inWorkPath workPath: String) throws
    /// Removes a directory tree of ours in a working path; nothing when it is gone.
    func removeDirectory(_ path: String) throws

    /// Streams `source` (a file or block device), compressed, into `destination` on this server;
    /// with `stageFile`, the compressed stream is also kept on the hypervisor. Byte counts and
    /// checksums of both ends are compared; a mismatch or any remote failure throws. Scratch files
    /// go into `scratch`, the job's staging directory: a stream cut off by a lost connection cannot
    /// clean up after itself there, and the job's cleanup removes that directory whole.
    func copyImage(_ source: String, scratch: String, stageFile: String?, to destination: String, abort: AbortFlag)
        throws -> TransferredImage

    /// What this host offers for live backups (libvirt's backup API, nbdcopy).
    func liveSupport() throws -> LiveSupport
    /// Thaws them; nothing when the guest has no agent configured.
    func thawFilesystems(_ vm: String) throws
    /// Begins a pull-mode backup job of the request's disks (every other disk of the domain is named
    /// in `excluded`), its socket and scratch files in its directory (made here, owned by the qemu
    /// user), if that directory's file system has room for what the scratch files may grow to
    /// (LiveBackupError.noScratchRoom). With `quiesce`, the guest agent freezes the file systems for
    /// the begin only, for FreezeTimeout at most (or, without an agent, the sysrq emergency sync is
    /// sent first). A job already running on the domain is reported, not begun over (and nothing is
    /// frozen).
    func beginBackupJob(_ request: LiveJobRequest) throws -> LiveBegin
    /// Ends the backup job whose socket is in `directory`, if it runs, and removes the directory;
    /// a job of anyone else is left alone. Fails (keeping the directory) when it cannot tell.
    func endBackupJob(_ vm: String, directory: String) throws
    /// The room left on the file system of the job in `directory` and what the live jobs there may
    /// still need, and the domain's condition: what ScratchWatch polls while the copy runs.
    func liveScratch(_ vm: String, directory: String) throws -> ScratchReading
    /// Streams one export of a running job, like `copyImage`.
    func copyExport(
        _ export: String, of job: LiveJob, scratch: String, stageFile: String?, to destination: String,
        abort: AbortFlag
    ) throws -> TransferredImage

    /// Streams `image` through the chunk store's helper (copied into `workPath` on first use and checked
    /// before every use) into `staging`: only the chunks the store lacks cross the wire, each checked
    /// against its digest. Scratch files go into `scratch` as for `copyImage`.
    func sendChunks(
        _ image: ImageSource, helper: ChunkHelper, workPath: String, scratch: String, into staging: ChunkStaging,
        abort: AbortFlag
    ) throws -> ChunkReceipt

    /// Keeps the staged copy of backup `id` as the VM's only kept copy (its RAM state file removed),
    /// removing older kept copies and staging directories of ours.
    func keepStagedCopy(_ work: WorkLayout, id: String) throws
    /// Removes every staged and kept copy of ours in the VM's working directory.
    func removeStagedCopies(_ work: WorkLayout, id: String) throws

    /// Ends the connection (the shared ssh master); the hypervisor is not used afterwards.
    func close()
}

/// What `inspect` learns of a domain in one round trip.
public struct DomainInspection: Sendable, Equatable {
    public var state: DomainState
    public var liveXML: String
    public var inactiveXML: String

    public init(state: DomainState, liveXML: String, inactiveXML: String) {
        self.state = state
        self.liveXML = liveXML
        self.inactiveXML = inactiveXML
    }
}

/// Whether an LVM snapshot can still be read consistently. LVM invalidates a snapshot that overflows.
public struct SnapshotStatus: Sendable, Equatable {
    public var valid: Bool
    /// lvs' attributes and fill level, for the error message.
    public var detail: String

    public init(valid: Bool, detail: String) {
        self.valid = valid
        self.detail = detail
    }
}

/// One image moved from a hypervisor into a file on this server.
public struct TransferredImage: Sendable, Equatable {
    /// The source's size (uncompressed).
    public var rawBytes: Int64
    /// The stored (compressed) size, its POSIX cksum (both ends agreed) and SHA-256 (this server).
    public var storedBytes: Int64
    public var storedCksum: UInt32
    public var storedSHA256: String

    public init(rawBytes: Int64, storedBytes: Int64, storedCksum: UInt32, storedSHA256: String) {
        self.rawBytes = rawBytes
        self.storedBytes = storedBytes
        self.storedCksum = storedCksum
        self.storedSHA256 = storedSHA256
    }
}

/// The configured hypervisors: where a VM is now, and a connection to one of them.
public protocol Fleet: Sendable {
    /// The host on which `vm` is to be backed up now (it may have migrated).
    func locate(_ vm: String) throws -> String
    /// A connection to `host` for the length of one job (closed by the caller).
    func connect(_ host: String) throws -> any Hypervisor
}
