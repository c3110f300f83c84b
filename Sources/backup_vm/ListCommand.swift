import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm list [NAME]`: committed backups in the storage folder.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the committed backups of one or all VMs.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only this VM.")
    var vm: String?

    func run() throws {
        if let vm, !SafeName.isValidVMName(vm) {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let catalog = BackupCatalog(storage: configuration.main.backupStorage)
        let vms = vm.map { [$0] } ?? configuration.schedule.entries.map(\.vm)
        for name in vms {
            let backups = catalog.backups(of: name)
            print("\(name): \(backups.count) backup(s)")
            let columns = [
                ("ID", 17), ("STARTED", 21), ("HOST", 10), ("MODE", 5), ("SIZE", 10), ("DURATION", 9), ("DOWNTIME", 9),
                ("VERIFIED", 0),
            ]
            func row(_ cells: [String]) -> String {
                zip(cells, columns).map { cell, column in
                    column.1 == 0
                        ? cell : cell.padding(toLength: max(column.1, cell.count), withPad: " ", startingAt: 0)
                }.joined(separator: " ")
            }
            if !backups.isEmpty { print("  " + row(columns.map(\.0))) }
            for b in backups {
                guard let m = try? Manifest.read(backupDirectory: b.path) else {
                    print("  \(b.id)  (manifest unreadable)")
                    continue
                }
                let record = BackupVerifier.lastRecord(b)
                var verified = record.flatMap { r in r.ok.map { ($0 ? "ok " : "BAD ") + (r.verified ?? "") } } ?? "no"
                if let test = record?.restoreTest {
                    verified +=
                        test.ok
                        ? ", booted \(test.tested) in \(String(format: "%.0f", test.bootSeconds ?? 0)) s"
                        : ", BOOT FAILED \(test.tested)"
                }
                print(
                    "  "
                        + row([
                            b.id, m.started, m.host, m.mode.rawValue, Self.size(m.storedBytes),
                            String(format: "%.0f s", m.durationSeconds), String(format: "%.1f s", m.downtimeSeconds),
                            verified,
                        ]))
            }
        }
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return String(format: i == 0 ? "%.0f %@" : "%.1f %@", v, units[i])
    }
}
