import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm NAME`: back up one VM now, in the foreground, logging to the console and syslog.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Back up one VM now (the default: `backup_vm NAME`).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The VM to back up, as named in sheduler.conf.")
    var vm: String

    func run() throws {
        CommandSupport.ignoreBrokenPipes()
        guard SafeName.isValidVMName(vm) else {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        guard configuration.schedule.entry(for: vm) != nil else {
            throw CommandFailure.usage(
                "unknown VM '\(vm)': it has no line in \(Configuration.scheduleFile(in: configuration.directory)); add one to back it up"
            )
        }
        let logger = CommandSupport.setUpLogging(
            configuration, label: "backup_vm", console: true, verbose: global.verbose)
        let services = Services(configuration: configuration, logger: logger)
        try services.spool.prepare()
        let job = try services.spool.createClaimed(
            JobRequest(
                vm: vm, requestedBy: "backup_vm run (pid \(getpid()))",
                created: Timestamps.iso(Date())))
        // Ctrl-C, SIGTERM, or the terminal going away (SIGHUP: a dropped ssh session): the pipeline
        // rolls back (VM to its prior state) and the job fails.
        let signals = TerminalAbort()
        defer { signals.cancel() }
        let abort = signals.flag
        // On a terminal, a progress line under the log lines; in a file or pipe, log lines only.
        let line = ProgressLine(spool: services.spool.layout, job: job.name)
        line.start()
        let outcome = services.runner.run(job, slots: .wait, abort: abort)
        line.stop()
        switch outcome {
        case .succeeded(let report):
            print("backup of \(vm) done: \(report.backupID ?? "-") on \(report.host), \(report.bytes) bytes")
        case .failed(let reason):
            CommandSupport.printError("backup of \(vm) failed: \(reason)")
            throw ExitCode(1)
        case .deferred:
            throw ExitCode(1)  // a manual run waits for slots; it never defers
        }
    }
}
