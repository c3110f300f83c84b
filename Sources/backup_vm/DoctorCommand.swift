import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm doctor`: preflight of this server and every hypervisor.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract:
            "Check this server and every hypervisor: ssh and host keys, virsh/libvirtd, tools, free space, which VMs nobody backs up.",
        discussion:
            "Exit 0 when everything is ready (WARN lines included), 1 otherwise; every failure says what to do. The coverage found (domains without a sheduler.conf line, lines without a domain) is kept in the spool for `status`."
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let (findings, coverage) = Doctor(configuration: configuration).examine()
        for f in findings { print(f) }
        do {
            try coverage.write(spool: SpoolLayout(root: configuration.main.spoolDir))
        } catch {
            CommandSupport.printError("backup_vm doctor: cannot keep the coverage for status: \(error)")
        }
        if findings.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
