import ArgumentParser
import BackupVMCore
import Foundation

/// The cron tick: enqueue every VM that is due now. Run it every 10 minutes from cron.
@main
struct SchedulerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm_backup_sheduler",
        abstract: "Queue a backup job for every VM that is due now (run from cron every 10 minutes).")

    @Option(name: .customLong("config-dir"), help: "Directory holding backup_vm.d/ and vmsnapshot.d/.")
    var configDir: String?

    @Flag(help: "Print the decisions without queueing anything.")
    var dryRun = false

    @Option(help: "Decide as if it were this time (ISO 8601, e.g. 2026-11-30T23:00:00+01:00); for previews and tests.")
    var now: String?

    @Flag(help: "Log debug messages too.")
    var verbose = false

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: configDir)
        var when = Date()
        if let now {
            guard let parsed = try? Date.ISO8601FormatStyle().parse(now) else {
                throw ValidationError("--now '\(now)': expected an ISO 8601 time like 2026-11-30T23:00:00+01:00")
            }
            when = parsed
        }
        let logger = CommandSupport.setUpLogging(
            configuration, label: "vm_backup_sheduler", console: dryRun, verbose: verbose)
        let enqueuer = Enqueuer(
            configuration: configuration, spool: Spool(root: configuration.main.spoolDir), logger: logger)
        let result = try enqueuer.tick(now: when, dryRun: dryRun)
        for decision in result.decisions {
            if dryRun || verbose { print(decision.description) }
            logger.debug("\(decision.description)")
        }
        // Every tick refreshes the metrics: staleness grows while nothing runs.
        if !dryRun { JobAftermath(configuration: configuration, logger: logger).writeMetrics() }
    }
}
