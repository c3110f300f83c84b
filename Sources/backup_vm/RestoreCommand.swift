import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm restore NAME`: write a backup's disks back and define the domain.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a VM from a backup: write every disk back, define the domain.",
        discussion:
            "Checks every stored image against the manifest before anything is touched, writes each disk beside its own (a new LV, a file beside the file) and swaps the new disks in only when all are complete and checked. Refuses to overwrite the disks of a running or paused VM unless --force (which stops it once the new disks are written). With --as NEW, the copy gets new disk file and LV names, no UUID and no MAC addresses (libvirt makes new ones), so it can run beside the original."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The VM whose backup to restore.")
    var vm: String

    @Option(help: "Backup ID (default: the newest).")
    var backup: String?

    @Option(name: .customLong("to-host"), help: "Hypervisor to restore to (default: the one it was backed up from).")
    var toHost: String?

    @Option(name: .customLong("as"), help: "Restore under this new VM name.")
    var newName: String?

    @Flag(help: "Stop the VM if it is running or paused, once its new disks are written (they replace its disks).")
    var force = false

    @Flag(help: "Start the restored VM.")
    var start = false

    @Flag(
        name: .customLong("with-ram"),
        help:
            "For a hot backup: also restore the saved RAM state (virsh restore), so the VM continues from the moment of the backup instead of booting. Not with --as."
    )
    var withRAM = false

    func run() throws {
        CommandSupport.ignoreBrokenPipes()
        guard SafeName.isValidVMName(vm) else {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let logger = CommandSupport.setUpLogging(
            configuration, label: "backup_vm", console: true, verbose: global.verbose)
        let restorer = BackupRestorer(configuration: configuration, logger: logger)
        // Ctrl-C, SIGTERM or a dropped terminal before the VM is stopped: what was written beside the
        // disks is removed and nothing else is touched (Ctrl-C also ends the stream's ssh at once).
        let signals = TerminalAbort()
        defer { signals.cancel() }
        let abort = signals.flag
        do {
            let outcome = try restorer.restore(
                .init(
                    vm: vm, backupID: backup, toHost: toHost, newName: newName, force: force, start: start,
                    withRAM: withRAM, abort: abort))
            print("restored \(vm) backup \(outcome.backupID) as \(outcome.name) on \(outcome.host)")
            for (target, path) in outcome.disks.sorted(by: { $0.key < $1.key }) { print("  \(target) -> \(path)") }
        } catch {
            CommandSupport.printError("restore failed: \(error)")
            throw ExitCode(1)
        }
    }
}
