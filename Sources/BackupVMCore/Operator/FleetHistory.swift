import Foundation

/// What one finished job says (a done/ or failed/ record): the facts status, metrics, notifications
/// and the daily report show.
public struct JobSummary: Sendable, Codable, Equatable {
    public var job: String
    public var vm: String
    public var kind: JobKind
    public var status: JobResult.Status
    public var started: Date?
    public var finished: Date
    public var host: String?
    public var reason: String?
    public var warning: String?
    public var backupID: String?
    public var bytes: Int64?

    public var durationSeconds: Double? { started.map { finished.timeIntervalSince($0) } }

    /// nil for a record without a readable result (an unreadable file says nothing about its VM).
    public init?(job: String, file: JobFile) {
        let f = file.resultFields
        guard let raw = f["status"], let status = JobResult.Status(rawValue: raw),
            let finished = f["finished"].flatMap(Timestamps.parseISO)
        else { return nil }
        self.job = job
        vm = file.request.vm
        kind = file.request.kind
        self.status = status
        self.finished = finished
        started = f["started"].flatMap(Timestamps.parseISO)
        host = f["host"]
        reason = f["reason"]
        warning = f["warning"]
        backupID = f["backup"]
        bytes = f["bytes"].flatMap { Int64($0) }
    }
}

/// A committed backup, as its manifest tells it.
public struct BackupSummary: Sendable, Codable, Equatable {
    public var id: String
    public var host: String
    public var mode: String
    public var finished: Date
    public var storedBytes: Int64
    public var durationSeconds: Double
    public var downtimeSeconds: Double
}

/// One VM's history: its last job, its last good job, how many failed in a row since, and its newest
/// committed backup, which decides whether it is stale (no good backup within `StaleAfterHours`:
/// the backup that quietly stopped happening).
public struct VMHistory: Sendable, Codable, Equatable {
    public var vm: String
    /// The last backup job (restore tests are not backups: they neither count as one nor as a
    /// backup's failure).
    public var lastJob: JobSummary?
    public var lastSuccess: JobSummary?
    public var consecutiveFailures: Int
    public var newestBackup: BackupSummary?
    public var stale: Bool
    /// Hours since the newest good backup finished (nil: none).
    public var newestBackupAgeHours: Double?
    /// The last restore-test job (nil: none in the spool's records).
    public var lastRestoreTest: JobSummary? = nil
}

/// Reads the spool's finished jobs and the storage's manifests into one history per VM. Only files
/// are read; nothing is locked or changed, so status and metrics may run at any time.
public struct FleetHistory: Sendable {
    public let spool: Spool
    public let catalog: BackupCatalog
    public let staleAfterHours: Int

    public init(spool: Spool, catalog: BackupCatalog, staleAfterHours: Int) {
        self.spool = spool
        self.catalog = catalog
        self.staleAfterHours = staleAfterHours
    }

    public init(configuration: Configuration) {
        self.init(
            spool: Spool(root: configuration.main.spoolDir),
            catalog: BackupCatalog(storage: configuration.main.backupStorage),
            staleAfterHours: configuration.main.staleAfterHours)
    }

    /// Every finished job with a readable result, oldest first.
    public func finishedJobs() -> [JobSummary] {
        var jobs: [JobSummary] = []
        for state in [JobState.done, .failed] {
            for name in spool.names(in: state) {
                guard case .success(let file)? = spool.read(name, in: state),
                    let summary = JobSummary(job: name, file: file)
                else { continue }
                jobs.append(summary)
            }
        }
        return jobs.sorted { ($0.finished, $0.job) < ($1.finished, $1.job) }
    }

    /// The histories of `vms` (in that order), at `now`.
    public func histories(of vms: [String], now: Date = Date()) -> [VMHistory] {
        let byVM = Dictionary(grouping: finishedJobs(), by: \.vm)
        return vms.map { vm in history(of: vm, jobs: byVM[vm] ?? [], now: now) }
    }

    func history(of vm: String, jobs all: [JobSummary], now: Date) -> VMHistory {
        let jobs = all.filter { $0.kind == .backup }
        let failures = jobs.reversed().prefix { $0.status == .failed }.count
        let newest = newestGoodBackup(of: vm)
        let age = newest.map { now.timeIntervalSince($0.finished) / 3600 }
        return VMHistory(
            vm: vm, lastJob: jobs.last, lastSuccess: jobs.last { $0.status == .done },
            consecutiveFailures: failures, newestBackup: newest,
            stale: age.map { $0 > Double(staleAfterHours) } ?? true, newestBackupAgeHours: age,
            lastRestoreTest: all.last { $0.kind == .restoreTest })
    }

    /// The newest committed backup that verify has not found damaged.
    func newestGoodBackup(of vm: String) -> BackupSummary? {
        for ref in catalog.backups(of: vm).reversed() {
            guard let m = try? Manifest.read(backupDirectory: ref.path) else { continue }
            let bad = BackupVerifier.lastRecord(ref)?.isBad ?? false
            if bad { continue }
            return BackupSummary(
                id: ref.id, host: m.host, mode: m.mode.rawValue,
                finished: Timestamps.parseISO(m.finished) ?? ref.started, storedBytes: m.storedBytes,
                durationSeconds: m.durationSeconds, downtimeSeconds: m.downtimeSeconds)
        }
        return nil
    }
}
