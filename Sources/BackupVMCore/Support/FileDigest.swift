import Crypto
import Foundation

/// SHA-256 and size of a file, read through one 1 MiB buffer (a disk image never sits in memory).
enum FileDigest {
    /// Thrown when `stop` was raised before the end.
    enum Stopped: Error { case stopped }

    /// `stop` is looked at before every MiB: a check nobody waits for any more ends at once.
    static func sha256(ofFile path: String, stop: AbortFlag? = nil) throws -> (bytes: Int64, digest: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        let size = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var total: Int64 = 0
        while true {
            if stop?.isRaised == true { throw Stopped.stopped }
            let n = read(fd, buffer.baseAddress, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += Int64(n)
        }
        return (total, hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }
}
