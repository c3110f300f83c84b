import Foundation
import Logging

/// Builds the pieces the executables share from one configuration, so the daemon, the manual run and
/// the cron tick cannot disagree on paths, limits or the pipeline.
public struct Services: Sendable {
    public let configuration: Configuration
    public let spool: Spool
    public let executor: any BackupExecutor
    public let logger: Logger
    /// The daemon's after-job work (metrics, notifier), drained before it exits.
    public let aftermath = AftermathQueue()

    public init(configuration: Configuration, executor: (any BackupExecutor)? = nil, logger: Logger) {
        self.configuration = configuration
        self.spool = Spool(root: configuration.main.spoolDir)
        self.executor = executor ?? BackupPipeline(configuration: configuration, logger: logger)
        self.logger = logger
    }

    /// The runner of a manual run: metrics and the notifier run before it returns.
    public var runner: JobRunner { makeRunner(detachedAftermath: false) }

    /// `detachedAftermath`: the daemon's workers hand a finished job's metrics and notifier to the
    /// AftermathQueue, so a slow notifier never holds a worker that could start the next job.
    func makeRunner(detachedAftermath: Bool) -> JobRunner {
        let schedule = configuration.schedule
        var runner = JobRunner(
            locks: spool.locks, maxGlobal: configuration.main.maxBackupThreads,
            maxPerHost: configuration.main.maxBackupThreadsForHost, executor: executor,
            isKnownVM: { schedule.entry(for: $0) != nil }, logger: logger)
        let aftermath = JobAftermath(configuration: configuration, logger: logger)
        if detachedAftermath {
            let queue = self.aftermath
            // The metrics at once (a file write); the notifier on the queue behind the others.
            runner.afterJob = { @Sendable job in
                aftermath.writeMetrics()
                queue.submit { aftermath.notify(job: job) }
            }
        } else {
            runner.afterJob = { @Sendable job in aftermath.finished(job: job) }
        }
        return runner
    }

    public var recovery: OrphanRecovery {
        OrphanRecovery(
            spool: spool, executor: executor, maxRecoveries: configuration.main.maxRecoveries, logger: logger)
    }

    public func workerPool(exitWhenIdle: Bool = false) -> WorkerPool {
        let m = configuration.main
        return WorkerPool(
            spool: spool, runner: makeRunner(detachedAftermath: true), recovery: recovery,
            settings: WorkerPoolSettings(
                maxGlobal: m.maxBackupThreads, maxPerHost: m.maxBackupThreadsForHost,
                rescanInterval: TimeInterval(m.spoolRescanSeconds),
                tmpMaxAge: TimeInterval(m.tmpMaxAgeHours * 3600),
                finishedMaxAge: TimeInterval(m.spoolKeepDays * 86400),
                exitWhenIdle: exitWhenIdle),
            logger: logger)
    }
}
