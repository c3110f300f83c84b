import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm enqueue NAME...`: queue backups for the daemon, safely (tmp/, fsync, rename into new/).
struct EnqueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Queue backups of VMs for the worker daemon.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "VMs to queue, as named in sheduler.conf.")
    var vms: [String]

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        for vm in vms {
            guard SafeName.isValidVMName(vm) else {
                throw CommandFailure.invalidVMName(vm)
            }
            guard configuration.schedule.entry(for: vm) != nil else {
                throw CommandFailure.usage(
                    "unknown VM '\(vm)': it has no line in \(Configuration.scheduleFile(in: configuration.directory))")
            }
        }
        let spool = Spool(root: configuration.main.spoolDir)
        try spool.prepare()
        for vm in vms {
            let name = try spool.enqueue(
                JobRequest(
                    vm: vm, requestedBy: "backup_vm enqueue (uid \(getuid()))",
                    created: Timestamps.iso(Date())))
            print("queued \(vm) as \(name)")
        }
    }
}
