import Foundation
import Logging

/// Start-up (and periodic) recovery of jobs left in active/ by a worker that died. Such a job is not
/// simply requeued: first the pipeline's cleanup runs (VM back to its prior state, our snapshots
/// removed, partial files deleted); then the job is requeued, or failed when it has already been
/// recovered MaxRecoveries times (a job that kills its worker must not do so forever).
public struct OrphanRecovery: Sendable {
    public let spool: Spool
    public let executor: any BackupExecutor
    public let maxRecoveries: Int
    public let logger: Logger

    /// Shared with the worker pool that runs this recovery: a VM is never recovered while the pool
    /// runs a job of it, nor a job started while its VM is being recovered.
    public let activity: VMActivity

    public init(
        spool: Spool, executor: any BackupExecutor, maxRecoveries: Int, logger: Logger,
        activity: VMActivity = VMActivity()
    ) {
        self.spool = spool
        self.executor = executor
        self.maxRecoveries = maxRecoveries
        self.logger = logger
        self.activity = activity
    }

    public enum Outcome: Sendable, Equatable {
        case requeued(String)
        case failed(String, reason: String)
        case finishedMove(String)
    }

    /// Adopts and recovers every abandoned job in active/.
    @discardableResult
    public func run() -> [Outcome] { recover(adopt()) }

    /// Takes over every abandoned job in active/ (its flock) and marks the VM of each as under
    /// recovery, so that the pool starts no job of it until its cleanup is done. Quick (local files
    /// only): the worker pool calls it before it claims anything, then runs `recover` on a thread of
    /// its own. A job whose VM cannot be marked (a job of it runs here) is left for the next pass.
    public func adopt() -> [ClaimedJob] {
        spool.names(in: .active).compactMap { name in
            guard let job = try? spool.adoptOrphan(name) else { return nil }
            if let vm = Self.vmToClean(job), !activity.beginRecovery(vm) {
                job.closeDescriptor()
                return nil
            }
            return job
        }
    }

    /// Recovers adopted jobs (slow: the pipeline's cleanup over ssh), ending each VM's mark as its
    /// cleanup ends.
    public func recover(_ jobs: [ClaimedJob]) -> [Outcome] {
        jobs.compactMap { job in
            defer { if let vm = Self.vmToClean(job) { activity.endRecovery(vm) } }
            // The dead worker's progress file: status must not show the job as still copying.
            unlink(spool.layout.progress + "/" + job.name)
            return recover(job)
        }
    }

    /// The VM whose cleanup recovering this job runs (nil: unreadable, or finished and only not moved).
    static func vmToClean(_ job: ClaimedJob) -> String? {
        guard case .success(let file) = job.parsed, file.resultStatus == nil else { return nil }
        return file.request.vm
    }

    func recover(_ job: ClaimedJob) -> Outcome? {
        let file: JobFile
        switch job.parsed {
        case .failure(let error):
            return failJob(job, "unreadable job found in active/: \(error.description)")
        case .success(let f):
            file = f
        }
        // The worker died after writing the result but before moving the file: finish the move.
        if let status = file.resultStatus {
            let target = (status == .done ? spool.layout.done : spool.layout.failed) + "/" + job.name
            if rename(job.activePath, target) == 0 {
                job.closeDescriptor()
                logger.notice(
                    "finished moving a completed job", metadata: ["job": "\(job.name)", "status": "\(status.rawValue)"])
                return .finishedMove(job.name)
            }
            return nil
        }
        let vm = file.request.vm
        // The cleanup touches the VM: only while no other job of that VM runs (in this process, see
        // `adopt`; in any other, its lock). Otherwise the next pass tries again.
        guard let vmLock = try? spool.locks.tryAcquireVM(vm) else {
            job.closeDescriptor()
            return nil
        }
        vmLock.describeHolder("pid=\(getpid()) recovering job=\(job.name)")
        logger.warning("recovering a job abandoned by a dead worker", metadata: ["job": "\(job.name)", "vm": "\(vm)"])
        let cleanup = Result { () throws -> String in
            switch file.request.kind {
            case .restoreTest: return try executor.recoverRestoreTest(vm: vm)
            case .backup: return try executor.recover(vm: vm, jobName: job.name)
            case .verify: return "nothing to clean up (a verify job reads this server's files only)"
            }
        }
        // The VM is let go before the job is back in new/: a daemon in another process may claim it at
        // once and must not find the VM still locked by this recovery (it would fail the job as
        // "already running"). In this process VMActivity holds the VM's jobs until `recover` returns.
        vmLock.release()
        let note: String
        switch cleanup {
        case .success(let n): note = n
        case .failure(let error):
            let reason = "worker died during the backup and the cleanup failed: \(error)"
            return failJob(job, reason + "; check the VM and its snapshots by hand")
        }
        if file.recoveries >= maxRecoveries {
            let times = "\(file.recoveries + 1) times (MaxRecoveries=\(maxRecoveries))"
            return failJob(job, "worker died during this job \(times); cleanup: \(note)")
        }
        do {
            try job.requeueAfterRecovery(note: note)
            logger.notice(
                "requeued an abandoned job after cleanup",
                metadata: ["job": "\(job.name)", "vm": "\(vm)", "cleanup": "\(note)"])
            return .requeued(job.name)
        } catch {
            return failJob(job, "cannot requeue after cleanup: \(error)")
        }
    }

    /// Ends the jobs that failed backups left running on a hypervisor (a live job whose end failed:
    /// its scratch files may keep growing): each VM's recovery runs when no job of it runs, here
    /// (VMActivity) or in any other process (its lock). One that fails again is tried at the next pass.
    @discardableResult
    public func recoverStranded() -> [String] {
        executor.strandedJobs().compactMap { vm in
            guard activity.beginRecovery(vm) else { return nil }
            defer { activity.endRecovery(vm) }
            guard let vmLock = try? spool.locks.tryAcquireVM(vm) else { return nil }
            defer { vmLock.release() }
            vmLock.describeHolder("pid=\(getpid()) recovering a stranded job of \(vm)")
            do {
                let note = try executor.recover(vm: vm, jobName: "stranded")
                logger.notice(
                    "ended a job a failed backup left running", metadata: ["vm": "\(vm)", "cleanup": "\(note)"])
                return note
            } catch {
                logger.error(
                    "a job a failed backup left running could not be ended yet (tried again at the next pass): \(error)",
                    metadata: ["vm": "\(vm)"])
                return nil
            }
        }
    }

    private func failJob(_ job: ClaimedJob, _ reason: String) -> Outcome {
        logger.error("abandoned job failed: \(reason)", metadata: ["job": "\(job.name)"])
        try? job.finish(JobResult(status: .failed, reason: reason))
        return .failed(job.name, reason: reason)
    }
}
