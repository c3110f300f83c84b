import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Small POSIX helpers used by the spool and the locks. They work on paths and file descriptors
/// directly (not FileManager) where atomicity matters: rename(2), O_EXCL, fsync of the directory.
enum Files {
    /// Creates `path` and its parents with `mode` when missing. An existing directory keeps its mode
    /// unless `enforceMode` is set (the spool and storage are tightened to 0700 on every start).
    static func makeDirectory(_ path: String, mode: mode_t = 0o700, enforceMode: Bool = false) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw SystemError("mkdir", path: path, errno: ENOTDIR) }
        } else {
            do {
                try FileManager.default.createDirectory(
                    atPath: path, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: Int(mode)])
            } catch {
                if !FileManager.default.fileExists(atPath: path) {
                    throw SystemError("mkdir", path: path, errno: EACCES)
                }
            }
        }
        if enforceMode, chmod(path, mode) != 0 { throw SystemError("chmod", path: path) }
    }

    /// Writes `data` to a new file (O_EXCL), fsyncs it. Used for the tmp/ step of an enqueue.
    static func writeNewFile(_ path: String, contents: String, mode: mode_t = 0o600) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw SystemError("create", path: path) }
        defer { close(fd) }
        try writeAll(fd, Array(contents.utf8), path: path)
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: path) }
    }

    /// Replaces `path` atomically: a temporary file beside it, fsynced, renamed over it, the directory
    /// fsynced. A crash leaves the old content or the new, never a torn file.
    static func replaceFile(_ path: String, contents: [UInt8], mode: mode_t = 0o600) throws {
        let tmp = path + ".tmp-\(getpid())"
        unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw SystemError("create", path: tmp) }
        do {
            try writeAll(fd, contents, path: tmp)
            guard fsync(fd) == 0 else { throw SystemError("fsync", path: tmp) }
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let error = SystemError("rename", path: path)
            unlink(tmp)
            throw error
        }
        syncDirectory((path as NSString).deletingLastPathComponent)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: path)
            }
            offset += n
        }
    }

    /// Reads at most `limit` bytes of an open file from offset 0.
    static func readAll(_ fd: Int32, limit: Int, path: String) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var offset: off_t = 0
        while result.count <= limit {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
            offset += off_t(n)
        }
        return result
    }

    /// A file that reports no size (procfs), read with read(2) to its end; nil when it cannot be opened
    /// or read. Foundation's FileManager.contents(atPath:) returns only the first page of such a file.
    static func readProcFile(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count <= limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return result
    }

    /// The first `limit + 1` bytes of a regular file (one more than allowed, so the caller can tell
    /// "too big"), or nil when it is missing or not a regular file. Links are not followed, and a FIFO
    /// or device is never read (O_NONBLOCK for the open, fstat before the read).
    static func readRegularFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return try? readAll(fd, limit: limit, path: path)
    }

    /// The same, but every failure is an error naming the path and errno: a missing file (ENOENT), a
    /// link (ELOOP: never followed), something that is not a regular file, a read error, and a file
    /// over `limit` bytes. For readers that must fail closed (the garbage collector's mark, quarantine).
    static func readRegularFileOrThrow(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("stat", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SystemError("read (not a regular file)", path: path, errno: EINVAL)
        }
        guard st.st_size <= limit else {
            throw SystemError("read (larger than \(limit) bytes)", path: path, errno: EFBIG)
        }
        let bytes = try readAll(fd, limit: limit, path: path)
        guard bytes.count <= limit else {
            throw SystemError("read (larger than \(limit) bytes)", path: path, errno: EFBIG)
        }
        return bytes
    }

    /// Every name in a directory but `.` and `..` (dot files included); an error naming the directory
    /// when it cannot be opened or read, never an empty list.
    static func entries(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemError("opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        // The name is read in place. Copying `entry.pointee.d_name` (a 256-byte tuple) would read past
        // the end of a short record, and past the end of readdir's buffer when the record is the last
        // one before an unmapped page: a rare SIGSEGV seen with 2,000 jobs in new/. A readdir error
        // (EIO, ESTALE on NFS) is an error, never the end of the listing.
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw SystemError("readdir", path: path) }
                break
            }
            let name = String(
                cString: UnsafeRawPointer(entry).advanced(by: nameOffset).assumingMemoryBound(to: CChar.self))
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    /// fsync of a directory makes a rename into it durable.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Names in a directory, without . and .. and without dot files (editors' and our temporaries).
    static func visibleEntries(_ path: String) throws -> [String] {
        try entries(path).filter { !$0.hasPrefix(".") }
    }

    static func modificationTime(_ path: String) -> Date? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
    }

    /// Removes a directory and what is in it without following symbolic links (a link is removed,
    /// never what it points to).
    static func removeTree(_ dir: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            let path = dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR { removeTree(path) } else { unlink(path) }
        }
        rmdir(dir)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}
