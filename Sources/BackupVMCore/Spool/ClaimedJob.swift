import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A job this process owns: the file is in active/ and this object holds an flock on it. The lock is
/// what tells a live owner from a dead one: recovery treats an active/ job whose lock it can take as
/// abandoned. The descriptor is opened before the claiming rename and keeps the lock across it, so no
/// moment exists in which a claimed job looks abandoned.
public final class ClaimedJob: @unchecked Sendable {
    public let name: String
    public let layout: SpoolLayout
    /// The parsed file, or the reason it could not be parsed.
    public let parsed: Result<JobFile, JobFile.ParseError>
    private var fd: Int32
    private let lock = NSLock()

    init(name: String, layout: SpoolLayout, fd: Int32, parsed: Result<JobFile, JobFile.ParseError>) {
        self.name = name
        self.layout = layout
        self.fd = fd
        self.parsed = parsed
    }

    deinit { closeDescriptor() }

    public var activePath: String { layout.active + "/" + name }

    public var vm: String? { try? parsed.get().request.vm }

    /// Appends a line block (a recovery record, the result) and fsyncs it.
    func append(_ text: String) throws {
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw SystemError("append", path: activePath, errno: EBADF) }
        var st = stat()
        fstat(fd, &st)
        // Garbage without a final newline must not swallow the first record line.
        var prefix = ""
        if st.st_size > 0 {
            var last: UInt8 = 0
            _ = pread(fd, &last, 1, st.st_size - 1)
            if last != UInt8(ascii: "\n") { prefix = "\n" }
        }
        let bytes = Array((prefix + text).utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes {
                pwrite(fd, $0.baseAddress, $0.count, st.st_size + off_t(offset))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: activePath)
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: activePath) }
    }

    /// Writes the result block and moves the job to done/ or failed/. The result is written first,
    /// in place, so a crash between the two steps leaves a job that recovery can finish moving.
    public func finish(_ result: JobResult) throws {
        try append(result.serialized())
        let target = (result.status == .done ? layout.done : layout.failed) + "/" + name
        guard rename(activePath, target) == 0 else { throw SystemError("rename to \(target)", path: activePath) }
        Files.syncDirectory(result.status == .done ? layout.done : layout.failed)
        closeDescriptor()
    }

    /// Puts the job back into new/ (its host had no free slot); another worker may take it.
    public func unclaim() throws {
        let target = layout.new + "/" + name
        guard rename(activePath, target) == 0 else { throw SystemError("rename to \(target)", path: activePath) }
        closeDescriptor()
    }

    /// Records a recovery and requeues the job.
    func requeueAfterRecovery(note: String) throws {
        try append("recovered=\(Timestamps.iso(Date())) \(JobFile.oneLine(note))\n")
        try unclaim()
    }

    func closeDescriptor() {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }
}
