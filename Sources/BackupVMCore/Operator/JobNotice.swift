import Foundation

/// A finished job as the notifier and the after-job steps see it: its record in done/ or failed/,
/// and for a backup that was made, the downtime from its manifest.
public struct JobNotice: Sendable, Equatable {
    public var job: JobSummary
    public var downtimeSeconds: Double?

    public init(job: JobSummary, downtimeSeconds: Double? = nil) {
        self.job = job
        self.downtimeSeconds = downtimeSeconds
    }

    /// Reads the record a finished job left (nil: it is in neither done/ nor failed/, or unreadable).
    public static func read(job name: String, spool: Spool, catalog: BackupCatalog) -> JobNotice? {
        for state in [JobState.done, .failed] {
            guard case .success(let file)? = spool.read(name, in: state),
                let summary = JobSummary(job: name, file: file)
            else { continue }
            var notice = JobNotice(job: summary)
            // A restore test names the backup it tested: that backup's downtime is not the test's.
            if summary.kind == .backup, let id = summary.backupID,
                let ref = catalog.backups(of: summary.vm).first(where: { $0.id == id })
            {
                notice.downtimeSeconds = (try? Manifest.read(backupDirectory: ref.path))?.downtimeSeconds
            }
            return notice
        }
        return nil
    }

    /// The notifier's environment. Every value is a plain string: the command reads them as variables
    /// (quoted, in a shell), they are never put into its command line.
    public var environment: [String: String] {
        var env: [String: String] = [
            "BACKUP_VM_VM": job.vm,
            "BACKUP_VM_JOB": job.job,
            "BACKUP_VM_KIND": job.kind.rawValue,
            "BACKUP_VM_STATUS": job.status.rawValue,
            "BACKUP_VM_FINISHED": Timestamps.iso(job.finished),
            "BACKUP_VM_HOST": job.host ?? "",
            "BACKUP_VM_REASON": job.reason ?? "",
            "BACKUP_VM_WARNING": job.warning ?? "",
            "BACKUP_VM_BACKUP_ID": job.backupID ?? "",
            "BACKUP_VM_BYTES": job.bytes.map(String.init) ?? "",
            "BACKUP_VM_DURATION": job.durationSeconds.map { String(format: "%.1f", $0) } ?? "",
            "BACKUP_VM_DOWNTIME": downtimeSeconds.map { String(format: "%.1f", $0) } ?? "",
        ]
        if let started = job.started { env["BACKUP_VM_STARTED"] = Timestamps.iso(started) }
        return env
    }
}
