import Foundation

/// One ssh connection per hypervisor for the length of a job, shared by all its commands
/// (ControlMaster): a backup runs a dozen short remote commands, and a new ssh handshake for each cost
/// about a third of a second here. The master is stopped explicitly (`ssh -O exit`) when the job ends;
/// ControlPersist bounds its life if the worker is killed before it can do that.
public final class SSHConnectionShare: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private var used: [String: RemoteHost] = [:]

    public init() throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/bvm-ssh.XXXXXX").utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", path: FileManager.default.temporaryDirectory.path)
        }
        directory = String(cString: dir)
    }

    /// ssh options that route a host's connections through this share.
    func options(for host: RemoteHost) -> [String] {
        lock.withLock { used[host.name] = host }
        return ["-o", "ControlMaster=auto", "-o", "ControlPath=\(directory)/%C", "-o", "ControlPersist=60"]
    }

    /// Stops every master this share started and removes its directory.
    public func close() {
        let hosts = lock.withLock { () -> [RemoteHost] in
            defer { used = [:] }
            return Array(used.values)
        }
        for host in hosts {
            var argv = ["ssh"]
            if let config = host.sshConfig { argv += ["-F", config] }
            argv += ["-o", "ControlPath=\(directory)/%C", "-O", "exit", "-l", "root", host.name]
            _ = try? ProcessRunner.run(argv)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { close() }
}
