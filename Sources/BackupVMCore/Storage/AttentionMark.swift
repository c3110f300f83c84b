import Foundation

/// A VM that could not be returned to its prior state is marked in the storage folder
/// (`BackupStorage/VM/.attention`) until an operator has looked at it and runs
/// `backup_vm resolve VM`. While marked, no backup of it starts and no recovery touches it: a new
/// backup would find it shut off and back it up as "was off" (never starting it), and its cleanup
/// would sweep the staged RAM state that is the way back.
public struct AttentionMark: Codable, Sendable, Equatable {
    public var vm: String
    public var host: String
    public var backupID: String
    public var priorState: DomainState
    /// The saved RAM state kept on the host (`virsh restore` brings the VM back), if any.
    public var ramFile: String?
    /// The staging directory kept on the host with it.
    public var stagingDirectory: String
    public var reason: String
    public var marked: String

    public static let fileName = ".attention"

    public static func path(storage: StorageLayout, vm: String) -> String {
        storage.vmDirectory(vm) + "/" + fileName
    }

    public func write(storage: StorageLayout) throws {
        try Files.makeDirectory(storage.vmDirectory(vm), mode: 0o700)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.replaceFile(AttentionMark.path(storage: storage, vm: vm), contents: Array(try encoder.encode(self)))
    }

    /// The mark of `vm`, if it has one. A mark that cannot be read still counts (as unreadable).
    public static func read(storage: StorageLayout, vm: String) -> Result<AttentionMark, SystemError>? {
        let path = AttentionMark.path(storage: storage, vm: vm)
        guard Files.exists(path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path),
            let mark = try? JSONDecoder().decode(AttentionMark.self, from: data)
        else { return .failure(SystemError("read attention mark", path: path, errno: EINVAL)) }
        return .success(mark)
    }

    /// Removes the mark (`backup_vm resolve`); returns what it said.
    public static func clear(storage: StorageLayout, vm: String) throws -> Result<AttentionMark, SystemError>? {
        let mark = read(storage: storage, vm: vm)
        if mark != nil {
            let path = AttentionMark.path(storage: storage, vm: vm)
            guard unlink(path) == 0 else { throw SystemError("remove", path: path) }
        }
        return mark
    }

    /// What the operator is told while the mark stands.
    public var summary: String {
        let ram = ramFile.map { "; its RAM state is kept in \($0) on \(host): `virsh restore \($0)`" } ?? ""
        return "\(vm) on \(host) was not returned to its prior state (\(priorState.rawValue)) by backup \(backupID)"
            + " at \(marked): \(reason)\(ram)"
    }
}

extension SystemError: Equatable {
    public static func == (a: SystemError, b: SystemError) -> Bool {
        a.operation == b.operation && a.path == b.path && a.errno == b.errno
    }
}
