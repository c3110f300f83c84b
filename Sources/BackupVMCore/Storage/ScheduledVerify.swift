import Foundation
import Logging

/// A verify job (`kind=verify`, queued by the cron tick when the VM's profile sets VerifyEveryDays):
/// every backup of the VM that was not verified within that many days (or never, or found damaged) is
/// verified as `backup_vm verify` does, newest first, so that damage is found before a restore needs
/// the backup. Chunks found good within the period (by any verify) are not read again
/// (ChunkVerifiedLog): a chunk shared by many backups and VMs is read once per period. The results go
/// into each backup's verify record (status, metrics and `list` show them); the job fails naming the
/// damaged backups.
public struct ScheduledVerify: Sendable {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The backups of `vm` that are due for verification at `now`, newest first (every backup when
    /// the profile sets no period: a job queued by hand checks them all).
    public func due(_ vm: String, now: Date = Date()) -> [BackupRef] {
        let days = configuration.profile(for: vm).verifyEveryDays
        let backups = BackupCatalog(storage: configuration.main.backupStorage).backups(of: vm).reversed()
        guard days > 0 else { return Array(backups) }
        return backups.filter { Self.isDue($0, days: days, now: now) }
    }

    /// Never verified, last found damaged, or verified longer ago than `days` (a record dated after
    /// `now`, the clock set back since, counts as old).
    static func isDue(_ backup: BackupRef, days: Int, now: Date) -> Bool {
        guard let record = BackupVerifier.lastRecord(backup), record.ok == true,
            let verified = record.verified.flatMap(Timestamps.parseISO), verified <= now
        else { return true }
        return now.timeIntervalSince(verified) >= Double(days) * 86400
    }

    public func run(vm: String, now: Date = Date(), abort: AbortFlag) throws -> BackupReport {
        let due = due(vm, now: now)
        let verifier = BackupVerifier(
            trustChunksVerifiedWithin: configuration.profile(for: vm).verifyEveryDays, now: now)
        var damaged: [String] = []
        for backup in due {
            if abort.isRaised { throw PipelineError.aborted }
            let report = verifier.verify(backup)
            if report.ok {
                logger.info("verified", metadata: ["vm": "\(vm)", "backup": "\(backup.id)"])
            } else {
                logger.error("backup \(backup.id) of \(vm) is damaged: \(report.problems.map(\.description))")
                damaged.append("\(backup.id) (\(report.problems.first.map { "\($0)" } ?? "?"))")
            }
        }
        guard damaged.isEmpty else {
            throw VerifyFailure(
                "\(damaged.count) of \(due.count) backups of \(vm) verified are damaged: "
                    + damaged.joined(separator: "; "))
        }
        return BackupReport(host: "", backupID: due.first?.id, bytes: 0)
    }
}

/// A verify job found damage: the job's reason.
public struct VerifyFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
