import Foundation

/// What a running backup must remember for its own recovery if its worker dies: written into the
/// partial backup directory before the VM is touched, read by `recover`.
struct JobBreadcrumb: Codable, Sendable {
    var id: String
    var host: String
    var priorState: DomainState.RawValue
    /// Remote directories/files that belong to this backup (staged images, the RAM state file).
    var remoteStageDir: String
    var remoteRAMFile: String?
    /// Our LVM snapshots (VG/LV) that may exist while the job runs.
    var snapshots: [LogicalVolume] = []
    /// The RAM state must be restored (hot backup or paused VM), not the VM started.
    var restoreFromRAM: Bool = false

    static let fileName = BackupNames.breadcrumb

    func write(into partial: String) throws {
        let data = try JSONEncoder().encode(self)
        let path = partial + "/" + JobBreadcrumb.fileName
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw SystemError("create", path: path)
        }
        Files.syncDirectory(partial)
    }

    static func read(from partial: String) -> JobBreadcrumb? {
        guard let data = FileManager.default.contents(atPath: partial + "/" + fileName) else { return nil }
        return try? JSONDecoder().decode(JobBreadcrumb.self, from: data)
    }
}
