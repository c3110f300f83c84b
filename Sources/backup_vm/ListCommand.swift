import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm list [NAME]`: committed backups in the storage folder.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the committed backups of one or all VMs.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only this VM.")
    var vm: String?

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let catalog = BackupCatalog(storage: configuration.main.backupStorage)
        let vms = vm.map { [$0] } ?? configuration.schedule.entries.map(\.vm)
        for name in vms {
            let backups = catalog.backups(of: name)
            print("\(name): \(backups.count) backup(s)")
            for b in backups { print("  \(b.id)  \(Timestamps.iso(b.started))") }
        }
    }
}
