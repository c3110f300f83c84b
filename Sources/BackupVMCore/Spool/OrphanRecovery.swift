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

    public init(spool: Spool, executor: any BackupExecutor, maxRecoveries: Int, logger: Logger) {
        self.spool = spool
        self.executor = executor
        self.maxRecoveries = maxRecoveries
        self.logger = logger
    }

    public enum Outcome: Sendable, Equatable {
        case requeued(String)
        case failed(String, reason: String)
        case finishedMove(String)
    }

    @discardableResult
    public func run() -> [Outcome] {
        var outcomes: [Outcome] = []
        for name in spool.names(in: .active) {
            guard let job = try? spool.adoptOrphan(name) else { continue }
            if let outcome = recover(job) { outcomes.append(outcome) }
        }
        return outcomes
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
        // The cleanup touches the VM: only while no other job of that VM runs.
        guard let vmLock = try? spool.locks.tryAcquireVM(vm) else {
            job.closeDescriptor()
            return nil
        }
        defer { vmLock.release() }
        vmLock.describeHolder("pid=\(getpid()) recovering job=\(job.name)")
        logger.warning("recovering a job abandoned by a dead worker", metadata: ["job": "\(job.name)", "vm": "\(vm)"])
        let note: String
        do {
            note = try executor.recover(vm: vm, jobName: job.name)
        } catch {
            return failJob(
                job,
                "worker died during the backup and the cleanup failed: \(error); check the VM and its snapshots by hand"
            )
        }
        if file.recoveries >= maxRecoveries {
            return failJob(
                job,
                "worker died during this job \(file.recoveries + 1) times (MaxRecoveries=\(maxRecoveries)); cleanup: \(note)"
            )
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

    private func failJob(_ job: ClaimedJob, _ reason: String) -> Outcome {
        logger.error("abandoned job failed: \(reason)", metadata: ["job": "\(job.name)"])
        try? job.finish(JobResult(status: .failed, reason: reason))
        return .failed(job.name, reason: reason)
    }
}
