import ArgumentParser
import BackupVMCore
import Foundation

/// The worker daemon: watches the spool and runs queued backups under the slot limits.
@main
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup_vmd",
        abstract: "Run queued backup jobs from the spool (the worker daemon; runs in the foreground).",
        discussion: """
            SIGTERM: stop claiming jobs and let running ones finish. A second SIGTERM: running jobs roll back \
            and fail.
            """)

    @Option(name: .customLong("config-dir"), help: "Directory holding backup_vm.d/ and vmsnapshot.d/.")
    var configDir: String?

    @Flag(help: "Also log to stderr (syslog always).")
    var console = false

    @Flag(help: "Log debug messages too.")
    var verbose = false

    func run() async throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: configDir)
        let logger = CommandSupport.setUpLogging(configuration, label: "backup_vmd", console: console, verbose: verbose)
        // What it cannot write (a sandbox that does not list it) it says now, not at every backup.
        let unwritable = WritableDirectories(configuration.main).problems()
        for problem in unwritable { logger.critical("\(problem)") }
        guard unwritable.isEmpty else { throw UnwritableDirectories(unwritable) }
        let services = Services(configuration: configuration, logger: logger)
        try services.spool.prepare()
        let presence = try DaemonPresence.announce(in: services.spool)
        let pool = services.workerPool()
        let signals = SignalWatcher(channel: pool.channel)
        logger.notice(
            "backup_vmd started",
            metadata: [
                "spool": "\(services.spool.layout.root)",
                "MaxBackupThreads": "\(configuration.main.maxBackupThreads)",
                "MaxBackupThreadsForHost": "\(configuration.main.maxBackupThreadsForHost)",
            ])
        if let others = presence.othersMessage(spool: services.spool.layout.root) { logger.notice("\(others)") }
        await pool.run()
        // The notifications of the last jobs (each notifier is killed after NotifyTimeout).
        let limit = TimeInterval((configuration.main.notify?.timeoutSeconds ?? 0) + 30)
        if !services.aftermath.drain(timeout: limit) {
            logger.warning("stopping with notifications still queued after \(Int(limit)) s")
        }
        withExtendedLifetime(signals) {}
        presence.release()
        logger.notice("backup_vmd stopped")
    }
}
