import Foundation
import Logging

/// The backup of one VM: locate, then a plan made by inspection (BackupPlanner), then the stages run
/// in order against the VM's hypervisor (BackupRun): freeze, snapshot, copy while stopped, thaw, copy
/// the snapshots, clean up, commit, keep on host, rotate. The hypervisors are reached through a
/// Fleet: over ssh in production, scripted in the unit tests.
///
/// Freezing: cold shuts a running VM down (ACPI); hot (every disk an LV) sends the sysrq emergency
/// sync and saves the RAM state (`virsh save`); a paused VM has its RAM saved either way and is
/// restored paused. While frozen, every LV disk gets a snapshot; disks that are not LVs are copied
/// then, with the VM stopped (as the seed did). Then the VM goes back (start, or `virsh restore`) and
/// the snapshots are copied while it runs, so the downtime does not grow with the disk size. A
/// snapshot that overflowed during the copy fails the backup. `Mode=hot` on a VM with any non-LV disk
/// falls back to cold and says so in the log and the manifest.
public struct BackupPipeline: BackupExecutor {
    public let configuration: Configuration
    public let fleet: any Fleet
    public let logger: Logger
    /// How often a VM's state is polled while waiting for its shutdown.
    public let pollInterval: TimeInterval

    public init(
        configuration: Configuration, logger: Logger, fleet: (any Fleet)? = nil, pollInterval: TimeInterval = 0.5
    ) {
        self.configuration = configuration
        self.logger = logger
        self.fleet = fleet ?? SSHFleet(main: configuration.main, logger: logger)
        self.pollInterval = pollInterval
    }

    var store: BackupStore { BackupStore(storage: configuration.main.backupStorage) }

    public func locate(vm: String) throws -> String { try fleet.locate(vm) }

    public func backup(vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?)
        throws -> BackupReport
    {
        try refuseIfMarked(vm)
        try recoverLeftovers(of: vm)
        let started = Date()
        let id = store.newID(vm: vm, started: started)
        let log = logger.with(["vm": "\(vm)", "host": "\(host)", "backup": "\(id)"])
        let hypervisor = try fleet.connect(host)
        defer { hypervisor.close() }
        let plan = try BackupPlanner(configuration: configuration).plan(vm: vm, id: id, on: hypervisor)
        logPlan(plan, log)
        let run = BackupRun(
            plan: plan, hypervisor: hypervisor, store: store, compression: configuration.main.compression,
            abort: abort, log: log, started: started, pollInterval: pollInterval,
            storeFormat: configuration.main.store, chunkHelperPath: configuration.main.chunkHelper)
        run.progress = progress
        return try run.execute()
    }

    public func restoreTest(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        let (backup, record) = try RestoreTest(configuration: configuration, logger: logger).run(
            .init(vm: vm, host: host, abort: abort))
        guard record.ok else {
            throw RestoreTestFailure(
                "restore test of backup \(backup.id) on \(host): \(record.problem ?? "did not boot")")
        }
        return BackupReport(host: host, backupID: backup.id, bytes: 0)
    }

    public func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        try ScheduledVerify(configuration: configuration, logger: logger).run(vm: vm, abort: abort)
    }

    public func recoverRestoreTest(vm: String) throws -> String {
        try RestoreTest(configuration: configuration, logger: logger).removeCopies(of: vm)
    }

    /// A VM that an earlier backup could not return to its prior state is left alone until an
    /// operator has cleared it (AttentionMark).
    func refuseIfMarked(_ vm: String) throws {
        switch AttentionMark.read(storage: store.layout, vm: vm) {
        case .none: return
        case .success(let mark)?: throw PipelineError.needsAttention(vm: vm, detail: mark.summary)
        case .failure(let error)?: throw PipelineError.needsAttention(vm: vm, detail: "\(error)")
        }
    }

    /// Partial backups of this VM that an earlier job left (a live job it could not end keeps its
    /// breadcrumb; a worker that died before the daemon's recovery got to it) are recovered first,
    /// under this job's VM lock: their job ended, their files removed, their VM put back.
    func recoverLeftovers(of vm: String) throws {
        guard !store.partialDirectories(of: vm).isEmpty else { return }
        let recovery = BackupRecovery(configuration: configuration, fleet: fleet, store: store, logger: logger)
        do {
            let note = try recovery.recover(vm: vm)
            logger.notice("cleaned up what an earlier backup left: \(note)", metadata: ["vm": "\(vm)"])
        } catch {
            throw PipelineError.leftoverNotRecovered(vm: vm, cause: "\(error)")
        }
    }

    private func logPlan(_ plan: BackupPlan, _ log: Logger) {
        if let note = plan.modeNote { log.notice("\(note)") }
        log.info(
            "inspected",
            metadata: [
                "state": "\(plan.priorState.rawValue)", "mode": "\(plan.mode.rawValue)",
                "disks": "\(plan.disks.map { "\($0.target)=\($0.source)" }.joined(separator: ","))",
                "snapshots": "\(plan.snapshots.map(\.disk.target).joined(separator: ","))",
                "excluded": "\(plan.excluded.map(\.target).joined(separator: ","))",
            ])
    }

    /// Scheduled VMs with a partial backup whose breadcrumb says its live job could not be ended.
    public func strandedJobs() -> [String] {
        configuration.schedule.entries.map(\.vm).filter { vm in
            // An unreadable breadcrumb is not taken for a stranded job here: the VM's next backup
            // recovers its leftovers first and fails loudly on it (PipelineError.leftoverNotRecovered).
            store.partialDirectories(of: vm).contains {
                ((try? JobBreadcrumb.read(from: $0)) ?? nil)?.isUnended == true
            }
        }
    }

    /// After a worker died: return the VM to the state recorded before it was touched, remove the
    /// staged copies and the partial backup.
    public func recover(vm: String, jobName: String) throws -> String {
        try refuseIfMarked(vm)
        return try BackupRecovery(configuration: configuration, fleet: fleet, store: store, logger: logger).recover(
            vm: vm)
    }
}

extension Logger {
    /// A copy of this logger with metadata added to every record.
    func with(_ metadata: Logger.Metadata) -> Logger {
        var copy = self
        for (k, v) in metadata { copy[metadataKey: k] = v }
        return copy
    }
}
