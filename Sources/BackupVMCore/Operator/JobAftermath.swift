import Foundation
import Logging

/// What follows every finished job: the metrics file is rewritten and the notifier runs. Neither can
/// change the job's result (it is recorded before); their failures are logged.
public struct JobAftermath: Sendable {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func finished(job name: String) {
        writeMetrics()
        notify(job: name)
    }

    /// Runs the notifier for a finished job, if one is configured and wants this result.
    public func notify(job name: String) {
        let main = configuration.main
        guard let settings = main.notify else { return }
        guard
            let notice = JobNotice.read(
                job: name, spool: Spool(root: main.spoolDir), catalog: BackupCatalog(storage: main.backupStorage))
        else {
            logger.warning("no notification: the record of job \(name) cannot be read")
            return
        }
        Notifier(settings: settings, logger: logger).notify(notice)
    }

    /// Rewrites MetricsFile, if one is configured (also after each cron tick).
    public func writeMetrics() {
        guard let path = configuration.main.metricsFile else { return }
        do {
            try MetricsFile(path: path).write(MetricsFile.snapshot(configuration: configuration))
        } catch {
            logger.warning("cannot write the metrics file: \(error)")
        }
    }
}
