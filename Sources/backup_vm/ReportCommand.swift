import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm report`: the daily summary for cron mail (`0 7 * * * backup_vm report`).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise the last day: backups done and failed, bytes, STALE and failing VMs, coverage.",
        discussion:
            "Exit 0 when all is well, 1 when something needs attention (a failed job, a STALE or failing VM, a VM nobody backs up)."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "The period, in hours back from now.")
    var hours = 24

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        guard (1...8760).contains(hours) else { throw CommandFailure.usage("--hours \(hours): expected 1 to 8760") }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let report = DailyReport.gather(configuration: configuration, hours: hours)
        print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
        if !report.healthy { throw ExitCode(1) }
    }
}
