import CShims
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A new file that a child process writes directly (the file is its stdout) while this process
/// reads it back behind the writer, from the page cache, to checksum it.
///
/// Why not a pipe: with a pipe every byte is copied into the pipe and out again, and the writer (ssh)
/// stalls whenever the reader is busy (hashing, waiting for the disk). Here ssh writes the file
/// exactly as the seed's `ssh ... > FILE` did and never waits for us; we only read what is already
/// there. Behind the read position, writeback of each `window` is started and the window before it
/// waited for and dropped from the page cache (sync_file_range + POSIX_FADV_DONTNEED), so dirty memory
/// stays bounded, the final fsync has little left to do and a backup does not push the server's
/// working set out of memory.
public final class FollowedFile {
    public let path: String
    /// The descriptor to give the writer as its stdout (kept open here for the writeback calls).
    public let writeFD: Int32
    private let readFD: Int32
    private let window: Int64
    public private(set) var readOffset: Int64 = 0
    private var windowStart: Int64 = 0
    private var previousWindow: Int64?

    public init(creating path: String, window: Int64 = 32 << 20) throws {
        let w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard w >= 0 else { throw SystemError("create", path: path) }
        let r = open(path, O_RDONLY | O_CLOEXEC)
        guard r >= 0 else {
            let error = SystemError("open", path: path)
            close(w)
            throw error
        }
        self.path = path
        writeFD = w
        readFD = r
        self.window = window
    }

    deinit {
        close(writeFD)
        close(readFD)
    }

    /// Reads what the writer has added since the last call, at most `buffer.count` bytes; 0 means
    /// nothing new yet (or the end, once the writer has exited).
    public func readNew(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = pread(readFD, buffer.baseAddress, buffer.count, off_t(readOffset))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            readOffset += Int64(n)
            if readOffset - windowStart >= window { writeBack() }
            return n
        }
    }

    /// Reads the file behind `writer` until the writer has finished and everything it wrote has been
    /// read, handing each chunk (through one reused 1 MiB buffer) to `body`. On abort, on no new byte
    /// for `limits.stall` seconds, or on a read error the writer is stopped (and reaped) before the
    /// error is thrown (`ProcessError.cut` for the limits); otherwise the caller `wait()`s for it and
    /// judges its exit status.
    public func follow(_ writer: SpawnedProcess, limits: CommandLimits, _ body: (UnsafeRawBufferPointer) -> Void)
        throws
    {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var watch = LimitWatch(limits, stdin: nil)
        do {
            while true {
                if let cut = watch.check() { throw ProcessError.cut(program: "writer", cut, stderr: writer.stderr) }
                // Whether the writer had finished is taken before the read: a read that then finds
                // nothing new has seen everything written. (Finished = exited and its stderr closed:
                // with a shared ssh connection the master process writes the file and closes both.)
                let finished = writer.hasFinished()
                let n = try readNew(into: buffer)
                if n > 0 {
                    watch.progressed()
                    body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                } else if finished {
                    return
                } else {
                    usleep(2_000)  // caught up with the writer
                }
            }
        } catch {
            writer.stop()
            throw error
        }
    }

    private func writeBack() {
        _ = bvm_sync_range(writeFD, windowStart, readOffset - windowStart, 0)
        if let previous = previousWindow {
            _ = bvm_sync_range(writeFD, previous, windowStart - previous, 1)
            _ = posix_fadvise(readFD, off_t(previous), off_t(windowStart - previous), Int32(POSIX_FADV_DONTNEED))
        }
        previousWindow = windowStart
        windowStart = readOffset
    }

    /// fsync: the file is durable when this returns.
    public func finish() throws {
        guard fsync(writeFD) == 0 else { throw SystemError("fsync", path: path) }
        _ = posix_fadvise(readFD, 0, 0, Int32(POSIX_FADV_DONTNEED))
    }
}
