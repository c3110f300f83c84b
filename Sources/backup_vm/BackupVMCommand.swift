import ArgumentParser
import BackupVMCore
import Foundation

/// Options every backup_vm subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customLong("config-dir"),
        help:
            "Directory holding backup_vm.d/ and vmsnapshot.d/ (default: $BACKUP_VM_CONFIG_DIR, else the current directory if it has backup_vm.d/, else /etc/backup_vm)."
    )
    var configDir: String?

    @Flag(name: .long, help: "Log debug messages too.")
    var verbose = false
}

@main
struct BackupVMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup_vm",
        abstract: "Back up libvirt/KVM virtual machines from their hypervisors to this server.",
        discussion:
            "`backup_vm NAME` backs up one VM now (a manual run, sharing the daemon's slots). The other subcommands manage the spool and the configuration.",
        subcommands: [
            RunCommand.self, EnqueueCommand.self, StatusCommand.self, ListCommand.self, VerifyCommand.self,
            RestoreCommand.self, ResolveCommand.self, DoctorCommand.self, ConfigCommand.self, GCCommand.self,
            StoreStatsCommand.self, ExportCommand.self, ReportCommand.self, RestoreTestCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )

    /// Parses with global options allowed before the subcommand (ArgumentOrder) and ends a
    /// CommandFailure with its own exit status and one line on stderr, no usage text.
    static func main() {
        let names = Set(configuration.subcommands.map { $0._commandName })
        let arguments = ArgumentOrder.subcommandFirst(
            Array(CommandLine.arguments.dropFirst()), subcommands: names, valueOptions: ["--config-dir"])
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let failure as CommandFailure {
            CommandSupport.printError("backup_vm: \(failure.message)")
            Foundation.exit(failure.status.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}
