import Foundation
import Logging

/// The cron tick (`vm_backup_sheduler`, every 10 minutes): enqueues every VM that is due. Idempotent:
/// it holds locks/enqueue while it decides and writes, and a VM with a job queued or running is not
/// due, so running it twice (or twice at once) enqueues nothing twice.
public struct Enqueuer: Sendable {
    public let configuration: Configuration
    public let spool: Spool
    public let planner: DuePlanner
    public let logger: Logger

    public init(configuration: Configuration, spool: Spool, planner: DuePlanner = DuePlanner(), logger: Logger) {
        self.configuration = configuration
        self.spool = spool
        self.planner = planner
        self.logger = logger
    }

    public struct TickResult: Sendable {
        public var decisions: [DueDecision]
        public var enqueued: [String: String]  // vm -> job name
    }

    public func tick(now: Date = Date(), dryRun: Bool = false) throws -> TickResult {
        try spool.prepare()
        // Blocking is pointless here: a tick that finds another tick running leaves the work to it.
        guard let lock = try FileLock.tryAcquire(spool.layout.locks + "/enqueue") else {
            logger.notice("another vm_backup_sheduler is running; this tick does nothing")
            return TickResult(decisions: [], enqueued: [:])
        }
        defer { lock.release() }
        for warning in configuration.warnings { logger.warning("\(warning)") }
        var result = TickResult(decisions: decisions(now: now), enqueued: [:])
        // Computed before any backup is queued (so a VM queued now is not "open" yet), queued after
        // them: a backup is claimed before a test of the same hour.
        let open = spool.vmsWithOpenJobs()
        let tests = restoreTestDecisions(now: now, backups: result.decisions, open: open)
        let verifies = verifyDecisions(now: now, backups: result.decisions, tests: tests, open: open)
        for decision in result.decisions {
            if let warning = decision.warning { logger.warning("\(warning)", metadata: ["vm": "\(decision.vm)"]) }
            guard decision.due, !dryRun else { continue }
            let name = try spool.enqueue(
                JobRequest(vm: decision.vm, requestedBy: "vm_backup_sheduler", created: Timestamps.iso(now)))
            result.enqueued[decision.vm] = name
            logger.info("enqueued", metadata: ["vm": "\(decision.vm)", "job": "\(name)"])
        }
        for test in tests where test.due && !dryRun {
            let name = try spool.enqueue(
                JobRequest(
                    vm: test.vm, requestedBy: "vm_backup_sheduler", created: Timestamps.iso(now), kind: .restoreTest))
            logger.info("restore test enqueued", metadata: ["vm": "\(test.vm)", "job": "\(name)"])
        }
        for verify in verifies where verify.due && !dryRun {
            let name = try spool.enqueue(
                JobRequest(
                    vm: verify.vm, requestedBy: "vm_backup_sheduler", created: Timestamps.iso(now), kind: .verify))
            logger.info("verify enqueued", metadata: ["vm": "\(verify.vm)", "job": "\(name)"])
        }
        result.decisions += tests + verifies
        return result
    }

    /// Is each scheduled VM due at `now`, and why (or why not)? Reads only; `status` asks too.
    public func decisions(now: Date) -> [DueDecision] {
        let store = BackupStore(storage: configuration.main.backupStorage)
        let failures = lastFailures(notAfter: now)
        let open = spool.vmsWithOpenJobs()
        return configuration.schedule.entries.map { entry in
            let newest = newestBackup(of: entry.vm, in: store, now: now)
            let state = DuePlanner.VMState(
                newestGoodBackup: newest?.started, newestBackupID: newest?.id,
                hasOpenJob: open.contains(entry.vm),
                lastFailure: failures[entry.vm])
            return planner.decide(
                entry, now: now, hours: configuration.main.backupHours, state: state,
                retryFailedAfter: TimeInterval(configuration.main.retryFailedAfterMinutes * 60))
        }
    }

    /// The newest backup of a VM as the planner must see it. IDs are start times, so the newest ID is
    /// the newest backup unless the clock was set back since: then the newest ID lies after `now`, and
    /// the newest by commit order (read from the manifests only in that case) is the one made last.
    func newestBackup(of vm: String, in store: BackupStore, now: Date) -> BackupRef? {
        guard let byID = store.catalog.newestBackup(of: vm) else { return nil }
        return byID.started <= now ? byID : store.inCommitOrder(vm).last
    }

    /// The newest failure time per VM, from the result records in failed/. Records dated after `now`
    /// (the clock was set back) are left out: they would hide the failures made since.
    func lastFailures(notAfter now: Date) -> [String: Date] {
        var newest: [String: Date] = [:]
        for name in spool.names(in: .failed) {
            // A failed restore test is not a failed backup: it must not hold the backup's retry off.
            guard case .success(let job)? = spool.read(name, in: .failed), job.request.kind == .backup,
                let finished = job.resultFields["finished"].flatMap(Timestamps.parseISO), finished <= now
            else { continue }
            if newest[job.request.vm].map({ finished > $0 }) ?? true { newest[job.request.vm] = finished }
        }
        return newest
    }
}
