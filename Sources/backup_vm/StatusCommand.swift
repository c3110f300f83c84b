import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm status`: what is queued, running and recently finished, and who holds which slot.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the spool: queued, running and finished jobs, held slots.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "How many finished jobs to show per folder.")
    var recent = 10

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let spool = Spool(root: configuration.main.spoolDir)
        print("spool \(spool.layout.root)")
        for state in JobState.allCases {
            let names = spool.names(in: state)
            print("\(state.rawValue): \(names.count)")
            let shown = (state == .done || state == .failed) ? Array(names.suffix(recent)) : names
            for name in shown {
                var line = "  \(name)"
                if case .success(let job)? = spool.read(name, in: state) {
                    line += "  vm=\(job.request.vm)"
                    if let host = job.resultFields["host"] { line += " host=\(host)" }
                    if let reason = job.resultFields["reason"] { line += " reason=\(reason)" }
                    if let warning = job.resultFields["warning"] { line += " warning=\(warning)" }
                } else if case .failure(let error)? = spool.read(name, in: state) {
                    line += "  (unreadable: \(error.description))"
                }
                print(line)
            }
        }
        let held = spool.locks.heldSlots()
        print("held slots: \(held.count)")
        for slot in held { print("  \(slot.slot)  \(slot.holder)") }
    }
}
