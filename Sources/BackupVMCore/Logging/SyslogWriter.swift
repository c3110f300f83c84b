import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Sends RFC 3164 messages (`<PRI>Mmm dd hh:mm:ss ident[pid]: text`) to the local syslog socket, as
/// glibc's syslog(3) does, but to a configurable socket path (SyslogSocket) so the daemon can be
/// pointed at a test socket and so a missing /dev/log is reported instead of silently swallowed.
public final class SyslogWriter: @unchecked Sendable {
    public let socketPath: String
    public let ident: String
    public let facility: SyslogFacility
    private let lock = NSLock()
    private var fd: Int32 = -1
    private var reportedFailure = false

    /// `reportFailure: false` for probes (doctor) that report the outcome themselves.
    public init(socketPath: String, ident: String = "backup_vm", facility: SyslogFacility, reportFailure: Bool = true) {
        self.socketPath = socketPath
        self.ident = ident
        self.facility = facility
        reportedFailure = !reportFailure
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Severity as in RFC 5424: 0 emergency ... 7 debug.
    public func send(severity: Int32, message: String) {
        let header = "<\(facility.code * 8 + severity)>\(SyslogWriter.timestamp()) \(ident)[\(getpid())]: "
        // Datagrams are limited in size; syslog daemons accept a few KiB. Keep lines whole but bounded.
        var line = header + message.replacingOccurrences(of: "\n", with: " ")
        // (Cut on bytes; a character split at the cut becomes U+FFFD instead of a trap.)
        if line.utf8.count > 8000 { line = String(decoding: line.utf8.prefix(8000), as: UTF8.self) }
        lock.withLock {
            if fd < 0 { connectLocked() }
            guard fd >= 0 else { return }
            let ok = line.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } >= 0
            if !ok {
                // The syslog daemon may have restarted: reconnect once.
                close(fd)
                fd = -1
                connectLocked()
                if fd >= 0 { _ = line.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }
            }
        }
    }

    private func connectLocked() {
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard socketPath.utf8.count < capacity else {
            close(s)
            return
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: socketPath.utf8)
            raw[socketPath.utf8.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let e = errno
            close(s)
            if !reportedFailure {
                reportedFailure = true
                let why = String(cString: strerror(e))
                CommandSupport.printError(
                    "backup_vm: syslog socket \(socketPath) unavailable (\(why)); logging to stderr only")
            }
            return
        }
        fd = s
    }

    public var isConnected: Bool {
        lock.withLock {
            if fd < 0 { connectLocked() }
            return fd >= 0
        }
    }

    static func timestamp() -> String {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, buf.count, "%b %e %H:%M:%S", &tmv)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
