import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm doctor`: preflight of this server and every hypervisor.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this server and every hypervisor: ssh and host keys, virsh/libvirtd, tools, free space.",
        discussion: "Exit 0 when everything is ready, 1 otherwise; every failure says what to do.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let findings = Doctor(configuration: configuration).run()
        for f in findings { print(f) }
        if findings.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
