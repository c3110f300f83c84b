import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The flock(2) locks held on this machine, as the kernel lists them in /proc/locks. Reading it
/// tells who holds a slot without taking the slot: a check that takes a lock, even for an instant,
/// can make a starting job see its slot taken and fail.
///
/// A line: `3: FLOCK  ADVISORY  WRITE 1234 fe:00:5333031 0 EOF` (major and minor device numbers in
/// hex, the inode in decimal). Waiters (`3: -> FLOCK ...`) hold nothing and are skipped, as are
/// POSIX, OFD and lease entries (the slots are flock locks only).
///
/// The kernel hands /proc/locks out one page (some 70 locks) per read, each page a consistent
/// snapshot; a lock released between two pages can make a later line be skipped. So an answer is a
/// hint (a slot seen free may be taken a moment later anyway), and the probe asks more than once.
public struct LockTable: Sendable {
    public struct FileID: Hashable, Sendable {
        public let major: UInt64
        public let minor: UInt64
        public let inode: UInt64

        public init(major: UInt64, minor: UInt64, inode: UInt64) {
            self.major = major
            self.minor = minor
            self.inode = inode
        }

        /// The id of a file as stat(2) reports it; nil when it does not exist.
        public init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            let dev = UInt64(st.st_dev)
            // glibc's major()/minor() (macros, not imported into Swift).
            major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
            minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
            inode = UInt64(st.st_ino)
        }
    }

    /// The pid that holds each locked file (the process that took the lock).
    public let holders: [FileID: Int32]

    public init(holders: [FileID: Int32]) { self.holders = holders }

    /// The table now; nil when /proc/locks cannot be read. Read to its end with read(2): it reports no
    /// size, and Foundation's FileManager.contents(atPath:) returned only its first page (some 70
    /// locks), so on a busy machine held slots looked free and the probe below could fail for good.
    public static func current(path: String = "/proc/locks") -> LockTable? {
        guard let bytes = Files.readProcFile(path) else { return nil }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    public static func parse(_ text: String) -> LockTable {
        var holders: [FileID: Int32] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 6, f[1] == "FLOCK", let pid = Int32(f[4]) else { continue }
            let id = f[5].split(separator: ":")
            guard id.count == 3, let major = UInt64(id[0], radix: 16), let minor = UInt64(id[1], radix: 16),
                let inode = UInt64(id[2])
            else { continue }
            holders[FileID(major: major, minor: minor, inode: inode)] = pid
        }
        return LockTable(holders: holders)
    }

    /// The pid holding an flock on `path`, nil when nobody does (or the file does not exist).
    public func holder(of path: String) -> Int32? {
        guard let id = FileID(path: path) else { return nil }
        return holders[id]
    }

    /// Does /proc/locks list locks on files in `directory` under the ids stat(2) reports? True on the
    /// usual file systems (ext4, xfs, tmpfs); btrfs subvolumes and overlayfs may report other
    /// device or inode numbers. Found out once per directory and process by locking a private probe
    /// file; when no probe can be made (no write access) the answer is yes.
    public static func isReliable(for directory: String) -> Bool {
        reliability.lock.withLock {
            if let known = reliability.known[directory] { return known }
            let answer = probe(directory)
            reliability.known[directory] = answer
            return answer
        }
    }

    private static let reliability = Reliability()

    private final class Reliability: @unchecked Sendable {
        let lock = NSLock()
        var known: [String: Bool] = [:]
    }

    private static func probe(_ directory: String) -> Bool {
        let path = directory + "/.probe.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return true }
        defer {
            unlink(path)
            close(fd)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        // Seen once is enough; a line skipped because other locks changed between pages must not
        // make this directory untrusted for the rest of the process's life.
        for _ in 0..<3 {
            guard let table = current() else { return true }
            if table.holder(of: path) != nil { return true }
        }
        return false
    }
}
