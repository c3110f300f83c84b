import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One ssh connection per hypervisor for the length of a job, shared by all its commands
/// (ControlMaster): a backup runs a dozen short remote commands, and a new ssh handshake for each cost
/// about a third of a second here. The master is stopped explicitly (`ssh -O exit`) when the job ends;
/// ControlPersist bounds its life if the worker is killed before it can do that.
public final class SSHConnectionShare: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private var used: [String: RemoteHost] = [:]

    public init() throws {
        SSHConnectionShare.sweepStale()
        var template = Array((FileManager.default.temporaryDirectory.path + "/bvm-ssh.XXXXXX").utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", path: FileManager.default.temporaryDirectory.path)
        }
        directory = String(cString: dir)
    }

    /// ssh options that route a host's connections through this share.
    func options(for host: RemoteHost) -> [String] {
        lock.withLock { used[host.name] = host }
        // ControlPersist only matters when the worker died without `-O exit`: then the master ends
        // itself after 10 s idle. A running job never leaves its master idle that long.
        return ["-o", "ControlMaster=auto", "-o", "ControlPath=\(directory)/%C", "-o", "ControlPersist=10"]
    }

    /// Stops every master this share started and removes its directory.
    public func close() {
        let hosts = lock.withLock { () -> [RemoteHost] in
            defer { used = [:] }
            return Array(used.values)
        }
        for host in hosts {
            var argv = [host.sshProgram]
            if let config = host.sshConfig { argv += ["-F", config] }
            argv += ["-o", "ControlPath=\(directory)/%C", "-O", "exit", "-l", "root", host.name]
            // `-O exit` talks to the local master only; the limit is for a master stuck on a dead host.
            _ = try? ProcessRunner.run(argv, limits: CommandLimits(total: 30))
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { close() }

    /// Removes share directories that a killed worker left behind: older than ten minutes and with no
    /// master listening in them any more (a long job's live master answers a connect and is kept).
    /// /tmp is everyone's: only directories that are ours beyond doubt are touched (a real directory,
    /// not a link; owned by us; mode 0700, as mkdtemp made it), so a local user cannot plant one with
    /// an old time and a link inside for root to follow.
    static func sweepStale(in base: String = FileManager.default.temporaryDirectory.path, now: Date = Date()) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return }
        for name in names where name.hasPrefix("bvm-ssh.") {
            let dir = base + "/" + name
            var st = stat()
            guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid(),
                st.st_mode & 0o777 == 0o700,
                let mtime = Files.modificationTime(dir), now.timeIntervalSince(mtime) > 600
            else { continue }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            if !entries.contains(where: { isListening(dir + "/" + $0) }) { Files.removeTree(dir) }
        }
    }

    static func isListening(_ path: String) -> Bool {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return false }
        defer { Glibc.close(s) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        } == 0
    }
}
