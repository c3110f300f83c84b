import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm status`: what runs (phase, bytes, rate, ETA), what is queued, each VM's last result,
/// newest good backup, staleness and next due time, and who holds which slot. Reads files only.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show running and queued jobs, each VM's last result and newest backup (STALE ones), held slots.",
        discussion: "`--json` prints the same as one JSON object (README: \"status --json\").")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print JSON instead of tables.")
    var json = false

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let report = StatusReport.gather(configuration: configuration)
        print(json ? report.json() : StatusText.render(report), terminator: json ? "\n" : "")
    }
}
