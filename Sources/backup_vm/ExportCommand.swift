import ArgumentParser
import BackupVMCore
import Foundation

/// `backup_vm export VM DISK [--backup ID] [--output FILE]`: one disk of a backup, on this server.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write one disk of a backup as a raw image (or qcow2, as stored) to a file or stdout.",
        discussion: "The image is checked first (every chunk of a chunk-store backup). Exit 0 when written, 1 when not."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The VM.")
    var vm: String

    @Argument(help: "The disk's target (vda, vdb, ...).")
    var disk: String

    @Option(help: "The backup's ID (default: the newest).")
    var backup: String?

    @Option(name: .shortAndLong, help: "Write here (a new file) instead of stdout.")
    var output: String?

    func run() throws {
        guard SafeName.isValidVMName(vm) else {
            throw CommandFailure.invalidVMName(vm)
        }
        let configuration = CommandSupport.loadConfiguration(explicitDirectory: global.configDir)
        let backups = BackupCatalog(storage: configuration.main.backupStorage).backups(of: vm)
        guard let ref = backup.map({ id in backups.first { $0.id == id } }) ?? backups.last else {
            FileHandle.standardError.write(Data("backup_vm export: \(vm) has no backup \(backup ?? "")\n".utf8))
            throw ExitCode(1)
        }
        var created = false
        do {
            let export = ImageExport(backup: ref, manifest: try Manifest.read(backupDirectory: ref.path))
            var fd: Int32 = 1
            if let output {
                fd = open(output, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw SystemError("create (it must not exist yet)", path: output) }
                created = true
            }
            defer { if fd != 1 { close(fd) } }
            try export.write(disk, to: fd, output: output ?? "stdout")
            if fd != 1, fsync(fd) != 0 { throw SystemError("fsync", path: output ?? "") }
        } catch {
            // Only a file this run made goes: a half-written image must not look like an export.
            if created, let output { unlink(output) }
            FileHandle.standardError.write(Data("backup_vm export: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
