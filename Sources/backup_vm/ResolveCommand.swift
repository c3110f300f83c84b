import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm resolve NAME`: clear the attention mark of a VM that a backup could not return to its
/// prior state, after the operator has checked it (and, if needed, `virsh restore`d its RAM state).
struct ResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Clear the attention mark of a VM after checking it by hand; backups of it resume.",
        discussion:
            "A backup that could not return a VM to its prior state marks it: no backup or recovery touches it or its"
            + " saved RAM state until this command runs. Remove the staged RAM state on the hypervisor yourself once"
            + " the VM is back.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The VM to clear.")
    var vm: String

    func run() throws {
        guard SafeName.isValidVMName(vm) else {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let storage = StorageLayout(storage: configuration.main.backupStorage)
        switch try AttentionMark.clear(storage: storage, vm: vm) {
        case .none:
            print("\(vm) has no attention mark; nothing to do")
        case .success(let mark)?:
            print("cleared: \(mark.summary)")
            print("staging directory left on \(mark.host) for you to remove: \(mark.stagingDirectory)")
        case .failure(let error)?:
            print("cleared an unreadable mark (\(error))")
        }
    }
}
