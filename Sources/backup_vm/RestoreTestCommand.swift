import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm restore-test VM`: restore the newest backup as a throw-away domain, boot it, wait for a
/// sign of life, record the result, remove everything.
struct RestoreTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-test",
        abstract:
            "Prove a backup boots: restore it as a throw-away domain (no network), boot it, wait for a sign of life, remove it.",
        discussion:
            "The copy is VM-restoretest on the backup's host (or --host), its disks files in WorkPath/VM/restoretest/. Signs of life, from the VM's profile: a serial console line matching RestoreTestReady, the guest agent answering, else RestoreTestSeconds of running. The result and boot time go into the backup's verify record (`list`). Exit 0 when it booted, 1 when not."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The VM whose backup to test.")
    var vm: String

    @Option(help: "The backup ID (default: the newest).")
    var backup: String?

    @Option(help: "The hypervisor to boot it on (default: the one it was backed up from).")
    var host: String?

    func run() throws {
        CommandSupport.ignoreBrokenPipes()
        guard SafeName.isValidVMName(vm) else {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let logger = CommandSupport.setUpLogging(
            configuration, label: "backup_vm", console: true, verbose: global.verbose)
        let signals = TerminalAbort()
        defer { signals.cancel() }
        let abort = signals.flag
        do {
            let (backup, record) = try RestoreTest(configuration: configuration, logger: logger).run(
                .init(vm: vm, backupID: self.backup, host: host, abort: abort))
            if record.ok {
                let seconds = String(format: "%.1f", record.bootSeconds ?? 0)
                print(
                    "restore test of \(vm) backup \(backup.id) on \(record.host): booted (\(record.signal ?? "?") after \(seconds) s)"
                )
            } else {
                CommandSupport.printError(
                    "restore test of \(vm) backup \(backup.id) on \(record.host) FAILED: \(record.problem ?? "?")")
                throw ExitCode(1)
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            CommandSupport.printError("restore test of \(vm) failed: \(error)")
            throw ExitCode(1)
        }
    }
}
