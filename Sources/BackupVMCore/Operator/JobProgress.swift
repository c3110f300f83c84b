import Foundation

/// Where a running job is: `spool/progress/JOB` (JSON), rewritten by its ProgressReporter a few
/// times a second and read by `backup_vm status` and a manual run's progress line. The README's
/// "status --json" documents the fields.
public struct JobProgress: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable, CaseIterable {
        /// Finding the hypervisor the VM runs on.
        case locate
        /// Waiting for a free slot (a manual run; the daemon defers instead).
        case wait
        /// Inspecting the domain, planning, preparing the working paths.
        case prepare
        /// Stopping the VM (cold), saving its RAM (hot), or starting the backup job (live).
        case freeze
        /// Taking LVM snapshots.
        case snapshot
        /// Copying disks (and a RAM state) to this server.
        case copy
        /// Returning the VM to its prior state.
        case thaw
        /// Writing the manifest and renaming the backup into place.
        case commit
        /// Removing backups beyond the VM's keep count (and, chunks, unreferenced chunks).
        case rotate
        /// A verify job: reading the VM's stored backups on this server (VerifyEveryDays).
        case verify
    }

    public var job: String
    public var vm: String
    public var host: String?
    public var phase: Phase
    /// What the phase works on (the disk being copied).
    public var detail: String?
    public var pid: Int32
    public var started: Date
    public var phaseStarted: Date
    public var updated: Date
    /// Copy: bytes this server has received so far: compressed (Store=files) or disk content gone
    /// through (Store=chunks).
    public var bytesDone: Int64?
    /// What bytesDone is heading to: the previous backup's figure (an estimate; nil without one).
    public var bytesTotal: Int64?
    public var bytesPerSecond: Double?
    public var etaSeconds: Double?

    public static let directoryName = "progress"

    public static func read(_ path: String) -> JobProgress? {
        guard let bytes = Files.readRegularFile(path, limit: 64 * 1024) else { return nil }
        let decoder = OperatorJSON.decoder()
        return try? decoder.decode(JobProgress.self, from: Data(bytes))
    }

    func encoded() -> [UInt8] {
        let encoder = OperatorJSON.encoder(pretty: false)
        return Array((try? encoder.encode(self)) ?? Data())
    }
}
