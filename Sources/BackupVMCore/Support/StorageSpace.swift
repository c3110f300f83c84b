import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Free space on this server's file systems.
enum StorageSpace {
    /// Bytes available to us on the file system holding `path` (or its directory); nil if unknown.
    static func available(at path: String) -> Int64? {
        var st = statvfs()
        var target = path
        if !Files.exists(target) { target = (path as NSString).deletingLastPathComponent }
        guard statvfs(target, &st) == 0 else { return nil }
        return Int64(st.f_bavail) * Int64(st.f_frsize)
    }

    /// Is the file system of `path` full (less than one 1 MiB buffer left)?
    static func isFull(at path: String) -> Bool {
        guard let free = available(at: path) else { return false }
        return free < 1 << 20
    }
}
