import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm verify [NAME...]`: check stored images against their manifests.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Decompress and check every stored image against its manifest (size and SHA-256).",
        discussion:
            "Exit 0 when every checked backup is intact, 1 when any is not (each bad file is named) or when a VM named on the command line has no backup."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "VMs to verify (default: every scheduled VM).")
    var vms: [String] = []

    @Flag(help: "Verify every backup, not only the newest of each VM.")
    var all = false

    func run() throws {
        for vm in vms where !SafeName.isValidVMName(vm) {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let catalog = BackupCatalog(storage: configuration.main.backupStorage)
        let names = vms.isEmpty ? configuration.schedule.entries.map(\.vm) : vms
        var bad = 0
        // One verifier for the run: a chunk shared by many backups is read once, and named for each.
        let verifier = BackupVerifier()
        for vm in names {
            let backups = catalog.backups(of: vm)
            if backups.isEmpty {
                print("\(vm): no backups")
                // Asked for by name: nothing verified is not a pass.
                if !vms.isEmpty { bad += 1 }
            }
            for backup in all ? backups : Array(backups.suffix(1)) {
                let report = verifier.verify(backup)
                if report.ok {
                    print("\(vm) \(backup.id): OK")
                } else {
                    bad += 1
                    print("\(vm) \(backup.id): BAD")
                    for p in report.problems { print("  \(p)") }
                }
            }
        }
        if bad > 0 { throw ExitCode(1) }
    }
}
