import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm config check`: validates every configuration file and prints every problem found.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Configuration tools.",
        subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate backup_vm.conf, sheduler.conf and vmsnapshot.d/; exit 0 when all is well, 2 otherwise.")

        @OptionGroup var global: GlobalOptions

        func run() throws {
            let dir = Configuration.resolveDirectory(explicit: global.configDir)
            do {
                let c = try Configuration.load(directory: dir)
                for warning in c.warnings { CommandSupport.printError("warning: \(warning)") }
                print("\(dir): OK" + (c.warnings.isEmpty ? "" : ", with \(c.warnings.count) warning(s)"))
                print("  hosts: \(c.main.hostServers.joined(separator: " "))")
                print("  storage: \(c.main.backupStorage)")
                print("  spool: \(c.main.spoolDir)")
                print(
                    "  BackupHours \(c.main.backupHours), MaxBackupThreads \(c.main.maxBackupThreads),"
                        + " MaxBackupThreadsForHost \(c.main.maxBackupThreadsForHost)")
                print(
                    "  \(c.schedule.entries.count) VM(s) scheduled, \(c.profiles.count) VM profile(s) besides default")
            } catch {
                CommandSupport.printError(error.description)
                CommandSupport.printError("\(dir): \(error.diagnostics.count) problem(s)")
                throw ExitCode(2)
            }
        }
    }
}
