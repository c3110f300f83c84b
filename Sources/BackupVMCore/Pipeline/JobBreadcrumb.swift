import Foundation

/// What a running backup must remember for its own recovery if its worker dies: written into the
/// partial backup directory before the VM is touched, read by `recover`.
struct JobBreadcrumb: Codable, Sendable {
    var id: String
    var host: String
    var priorState: DomainState.RawValue
    /// Remote directories/files that belong to this backup (staged images, the RAM state file).
    var remoteStageDir: String
    var remoteRAMFile: String?
    /// Our LVM snapshots (VG/LV) that may exist while the job runs.
    var snapshots: [LogicalVolume] = []
    /// The RAM state must be restored (hot backup or paused VM), not the VM started.
    var restoreFromRAM: Bool = false
    /// A live backup's job directory: recovery thaws the guest's file systems, ends the backup job
    /// whose socket is there and removes it. The VM itself was never stopped: its state is left alone.
    var liveDirectory: String? = nil
    /// Steps completed so far, recorded as each completes (absent in breadcrumbs of older versions).
    /// Once `thawed` is here the VM was returned to its prior state: recovery must not act on the
    /// prior state again (whatever state the VM is in now is someone else's doing; a `virsh restore`
    /// of the saved RAM would put hours-old memory onto newer disks).
    var completed: [Step]?

    enum Step: String, Codable, Sendable {
        case frozen, thawed
        /// The backup failed and its live job could not be ended: the daemon's recovery pass ends it.
        case unended
    }

    var hasThawed: Bool { completed?.contains(.thawed) ?? false }
    var isUnended: Bool { completed?.contains(.unended) ?? false }

    static let fileName = BackupNames.breadcrumb

    /// Writes (or replaces) the breadcrumb atomically and durably.
    func write(into partial: String) throws {
        try Files.replaceFile(partial + "/" + JobBreadcrumb.fileName, contents: Array(try JSONEncoder().encode(self)))
    }

    /// Records a completed step.
    mutating func record(_ step: Step, in partial: String) throws {
        completed = (completed ?? []) + [step]
        try write(into: partial)
    }

    /// The breadcrumb of a partial backup; nil when there is none (the job died before it wrote one,
    /// or after the commit removed it). One that cannot be read or parsed is an error: it may say the
    /// VM is shut off or snapshotted, and recovery must not throw that away.
    static func read(from partial: String) throws -> JobBreadcrumb? {
        let path = partial + "/" + fileName
        let bytes: [UInt8]
        do { bytes = try Files.readRegularFileOrThrow(path, limit: 1 << 20) } catch let e as SystemError
            where e.errno == ENOENT
        {
            return nil
        }
        let crumb = try JSONDecoder().decode(JobBreadcrumb.self, from: Data(bytes))
        guard DomainState(rawValue: crumb.priorState) != nil else {
            throw SystemError(
                "read (prior state '\(crumb.priorState)' is not a domain state)", path: path, errno: EINVAL)
        }
        return crumb
    }
}
