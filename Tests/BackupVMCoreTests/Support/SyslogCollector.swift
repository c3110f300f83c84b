import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A stand-in syslog daemon: a bound AF_UNIX datagram socket whose messages the test reads. The code
/// under test sends to it exactly as it would to /dev/log.
final class SyslogCollector: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var closed = false

    init(path: String) {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        precondition(rc == 0, "bind \(path): \(String(cString: strerror(errno)))")
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let socketFD = fd
        // The thread holds the collector weakly, so a test that drops it also stops the thread.
        let t = Thread { [weak self] in
            var buf = [UInt8](repeating: 0, count: 65536)
            while let collector = self, !collector.isClosed {
                let n = recv(socketFD, &buf, buf.count, 0)
                if n > 0 { collector.append(String(decoding: buf[0..<n], as: UTF8.self)) }
            }
            Glibc.close(socketFD)
        }
        t.start()
    }

    deinit { close() }

    private func append(_ message: String) { lock.withLock { received.append(message) } }

    private var isClosed: Bool { lock.withLock { closed } }

    var messages: [String] { lock.withLock { received } }

    func close() {
        let wasClosed = lock.withLock { () -> Bool in
            defer { closed = true }
            return closed
        }
        guard !wasClosed else { return }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        unlink(path)
    }
}
