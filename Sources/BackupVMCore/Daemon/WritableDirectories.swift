import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The directories the daemon writes, checked when it starts: the spool, BackupStorage and
/// MetricsFile's directory. Under the shipped unit (systemd's ProtectSystem=strict) everything the
/// unit does not list in ReadWritePaths is read-only, so a configuration that moves one of them
/// elsewhere would start a daemon whose every backup fails at night on "Read-only file system".
/// It refuses to start instead, naming each directory and the line that lets it write there.
public struct WritableDirectories: Sendable {
    /// One directory the daemon cannot write.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var key: String
        public var path: String
        /// strerror of access(2) on it (or on the directory it would be made in).
        public var reason: String

        public var description: String {
            "\(key) \(path) is not writable for backup_vmd (\(reason)); under the shipped systemd unit add it:"
                + " systemctl edit backup_vmd, then [Service] ReadWritePaths=\(path)"
        }
    }

    public let directories: [(key: String, path: String)]

    public init(_ main: MainConfig) {
        var list = [("SpoolDir", main.spoolDir), ("BackupStorage", main.backupStorage)]
        if let metrics = main.metricsFile {
            list.append(("MetricsFile's directory", (metrics as NSString).deletingLastPathComponent))
        }
        directories = list
    }

    /// Every directory that cannot be written: a missing one is judged by the nearest directory above
    /// it that exists (where it would be made).
    public func problems() -> [Problem] {
        directories.compactMap { key, path in
            var probe = path
            while !Files.exists(probe), probe != "/", !probe.isEmpty {
                probe = (probe as NSString).deletingLastPathComponent
            }
            guard access(probe, W_OK) != 0 else { return nil }
            return Problem(key: key, path: path, reason: String(cString: strerror(errno)))
        }
    }
}

/// backup_vmd refuses to start: what it cannot write (WritableDirectories).
public struct UnwritableDirectories: Error, CustomStringConvertible {
    public let problems: [WritableDirectories.Problem]
    public init(_ problems: [WritableDirectories.Problem]) { self.problems = problems }
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
