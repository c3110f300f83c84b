import CShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a long stream (a disk image) to a new file with bounded dirty memory: every `window` bytes
/// it starts writeback of the window just written and waits for the one before (sync_file_range),
/// then drops it from the page cache (posix_fadvise DONTNEED). Disk writes overlap the network read,
/// the final fsync has little left to do, and a backup run does not push the server's working set out
/// of memory.
public final class StreamingFileWriter {
    public let path: String
    private let fd: Int32
    private let window: Int64
    private var written: Int64 = 0
    private var windowStart: Int64 = 0
    private var previousWindow: Int64?

    public init(creating path: String, window: Int64 = 32 << 20) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: path) }
        self.path = path
        self.window = window
    }

    deinit { close(fd) }

    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < chunk.count {
            let n = Glibc.write(fd, chunk.baseAddress! + offset, chunk.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: path)
            }
            offset += n
        }
        written += Int64(chunk.count)
        if written - windowStart >= window {
            _ = bvm_sync_range(fd, windowStart, written - windowStart, 0)
            if let previous = previousWindow {
                _ = bvm_sync_range(fd, previous, windowStart - previous, 1)
                _ = posix_fadvise(fd, off_t(previous), off_t(windowStart - previous), Int32(POSIX_FADV_DONTNEED))
            }
            previousWindow = windowStart
            windowStart = written
        }
    }

    /// fsync: the file is durable when this returns.
    public func finish() throws {
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: path) }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    }
}
