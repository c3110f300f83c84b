/// Compression of stored disk images. lzop is the seed's format; zstd is optional.
public enum Compression: String, CaseIterable, Sendable {
    case lzop, zstd

    public var fileExtension: String { self == .lzop ? "lzo" : "zst" }
}

/// How BackupStorage holds backups: `files` (the seed's: one compressed file per disk, restorable by
/// hand with lzop or zstd) or `chunks` (the deduplicating chunk store, docs/chunk-store.md).
public enum StoreFormat: String, CaseIterable, Sendable, Codable {
    case files, chunks
}

/// syslog facilities an operator may choose (RFC 5424 numbers).
public enum SyslogFacility: String, CaseIterable, Sendable {
    case user, daemon, local0, local1, local2, local3, local4, local5, local6, local7

    public var code: Int32 {
        switch self {
        case .user: return 1
        case .daemon: return 3
        case .local0: return 16
        case .local1: return 17
        case .local2: return 18
        case .local3: return 19
        case .local4: return 20
        case .local5: return 21
        case .local6: return 22
        case .local7: return 23
        }
    }
}

/// backup_vm.d/backup_vm.conf: the seed's keys plus the ones this implementation adds.
public struct MainConfig: Sendable {
    public var hostServers: [String]
    public var backupStorage: String
    public var backupHours: HoursWindow
    public var maxBackupThreads: Int
    public var maxBackupThreadsForHost: Int
    public var compression: Compression
    public var compressionLevel: Int
    public var spoolDir: String
    /// ssh_config passed to ssh with -F; nil uses root's default ssh configuration.
    public var sshConfig: String?
    public var sshConnectTimeout: Int
    /// ssh -o Ciphers=...: AES-GCM first, which runs at twice chacha20's rate on CPUs with AES-NI (the
    /// common case for servers); "default" leaves the choice to ssh and ssh_config.
    public var sshCiphers: String?
    public var shutdownTimeout: Int
    /// Limits of remote steps: CommandTimeout, SaveTimeout, StallTimeout.
    public var timeouts: RemoteTimeouts
    public var forceOff: Bool
    public var syslogFacility: SyslogFacility
    public var syslogSocket: String
    public var spoolRescanSeconds: Int
    public var tmpMaxAgeHours: Int
    public var spoolKeepDays: Int
    public var retryFailedAfterMinutes: Int
    public var maxRecoveries: Int
    public var store: StoreFormat = .files
    /// The hypervisor helper of the chunk store (a file on this server that is copied to each
    /// hypervisor); nil: `bvm-chunk-helper` beside the running executable.
    public var chunkHelper: String? = nil
    /// A VM whose newest good backup is older than this many hours is STALE (status, metrics, report).
    public var staleAfterHours: Int = 48
    /// Where the Prometheus text file goes after every job and tick (nil: none is written).
    public var metricsFile: String? = nil
    /// Run after each job (`/bin/sh -c`), the result in BACKUP_VM_* variables (nil: none).
    public var notify: NotifySettings? = nil
    /// The disks of one restore written at once, each over its own ssh connection (RestoreStreams).
    public var restoreStreams: Int = 4

    public static let defaultCiphers = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"

    public static let knownKeys = [
        "HostServers", "BackupStorage", "BackupHours", "MaxBackupThreads", "MaxBackupThreadsForHost",
        "Compression", "CompressionLevel", "SpoolDir", "SshConfig", "SshConnectTimeout", "SshCiphers",
        "ShutdownTimeout", "CommandTimeout", "SaveTimeout", "StallTimeout",
        "ForceOff", "SyslogFacility", "SyslogSocket", "SpoolRescanSeconds", "TmpMaxAgeHours", "SpoolKeepDays",
        "RetryFailedAfterMinutes", "MaxRecoveries", "Store", "ChunkHelper",
        "StaleAfterHours", "MetricsFile", "NotifyCommand", "NotifyOn", "NotifyTimeout", "RestoreStreams",
    ]

    /// Parses the file's text. `displayName` is how errors name the file; `configDir` resolves the
    /// relative paths that are allowed (SpoolDir, BackupStorage, SshConfig).
    public static func parse(_ text: String, displayName: String, configDir: String) -> (
        MainConfig?, [ConfigDiagnostic]
    ) {
        let (assignments, syntax) = ShellAssignments.parse(text, file: displayName)
        var r = AssignmentReader(file: displayName, assignments: assignments, knownKeys: knownKeys)

        let hosts = parseHosts(&r)
        let storage = r.path("BackupStorage", relativeTo: configDir)
        if !r.has("BackupStorage") {
            r.fail("BackupStorage", "missing; expected the directory on this server that holds the backups")
        }
        let hours = parseHours(&r)
        let maxThreads = r.integer("MaxBackupThreads", in: 1...64, default: 2)
        let maxPerHost = r.integer("MaxBackupThreadsForHost", in: 1...64, default: 1)
        if r.has("MaxBackupThreadsForHost"), maxPerHost > maxThreads {
            r.fail("MaxBackupThreadsForHost", "expected at most MaxBackupThreads (\(maxThreads))")
        }
        let compression: Compression = r.choice("Compression", default: .lzop)
        let level = r.integer("CompressionLevel", in: compression == .lzop ? 1...9 : 1...19, default: 1)
        let spool = r.path("SpoolDir", relativeTo: configDir, default: configDir + "/spool")!
        let sshConfig = r.path("SshConfig", relativeTo: configDir)
        let connectTimeout = r.integer("SshConnectTimeout", in: 1...600, default: 10)
        let ciphers = parseCiphers(&r)
        let shutdownTimeout = r.integer("ShutdownTimeout", in: 1...86400, default: 300)
        let timeouts = RemoteTimeouts(
            command: r.integer("CommandTimeout", in: 5...86400, default: RemoteTimeouts.defaults.command),
            save: r.integer("SaveTimeout", in: 5...86400, default: RemoteTimeouts.defaults.save),
            stall: r.integer("StallTimeout", in: 5...86400, default: RemoteTimeouts.defaults.stall))
        let forceOff = r.bool("ForceOff", default: false)
        let facility: SyslogFacility = r.choice("SyslogFacility", default: .daemon)
        let socket = r.path("SyslogSocket", default: "/dev/log")!
        let rescan = r.integer("SpoolRescanSeconds", in: 1...86400, default: 30)
        let tmpAge = r.integer("TmpMaxAgeHours", in: 1...8760, default: 36)
        let keepDays = r.integer("SpoolKeepDays", in: 1...3650, default: 30)
        let retry = r.integer("RetryFailedAfterMinutes", in: 0...10080, default: 60)
        let recoveries = r.integer("MaxRecoveries", in: 0...100, default: 3)
        let store: StoreFormat = r.choice("Store", default: .files)
        let helper = r.path("ChunkHelper", relativeTo: configDir)
        let stale = r.integer("StaleAfterHours", in: 1...8760, default: 48)
        let metrics = r.path("MetricsFile")
        let notify = NotifySettings.parse(&r)
        let restoreStreams = r.integer("RestoreStreams", in: 1...16, default: 4)

        let diagnostics = syntax + r.diagnostics
        guard diagnostics.isEmpty, let storage else { return (nil, diagnostics) }
        var config = MainConfig(
            hostServers: hosts, backupStorage: storage, backupHours: hours, maxBackupThreads: maxThreads,
            maxBackupThreadsForHost: maxPerHost, compression: compression, compressionLevel: level,
            spoolDir: spool, sshConfig: sshConfig, sshConnectTimeout: connectTimeout, sshCiphers: ciphers,
            shutdownTimeout: shutdownTimeout, timeouts: timeouts, forceOff: forceOff, syslogFacility: facility,
            syslogSocket: socket, spoolRescanSeconds: rescan, tmpMaxAgeHours: tmpAge,
            spoolKeepDays: keepDays, retryFailedAfterMinutes: retry, maxRecoveries: recoveries, store: store,
            chunkHelper: helper, staleAfterHours: stale, metricsFile: metrics, notify: notify)
        config.restoreStreams = restoreStreams
        return (config, [])
    }

    /// HostServers: names separated by spaces or commas, each valid and listed once.
    static func parseHosts(_ r: inout AssignmentReader) -> [String] {
        guard let raw = r.string("HostServers", required: true) else { return [] }
        var hosts: [String] = []
        var seen = Set<String>()
        for host in raw.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }).map(String.init) {
            if !SafeName.isValidHostName(host) {
                r.fail("HostServers", "host '\(host)' is not valid; expected \(SafeName.hostExpectation)")
            } else if !seen.insert(host).inserted {
                r.fail("HostServers", "host '\(host)' is listed twice; expected each host once")
            } else {
                hosts.append(host)
            }
        }
        if hosts.isEmpty && r.diagnostics.isEmpty { r.fail("HostServers", "expected at least one host name") }
        return hosts
    }

    static func parseHours(_ r: inout AssignmentReader) -> HoursWindow {
        guard let raw = r.string("BackupHours") else { return .wholeDay }
        guard let window = HoursWindow.parse(raw) else {
            r.fail("BackupHours", "expected \(HoursWindow.expectation)")
            return .wholeDay
        }
        return window
    }

    /// SshCiphers: a list of cipher names, or "default" (nil: ssh decides).
    static func parseCiphers(_ r: inout AssignmentReader) -> String? {
        guard let raw = r.string("SshCiphers") else { return MainConfig.defaultCiphers }
        if raw == "default" { return nil }
        let valid = raw.split(separator: ",").allSatisfy {
            !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || "-.@".contains($0) }
        }
        guard valid else {
            r.fail("SshCiphers", "expected a comma-separated list of ssh cipher names (ssh -Q cipher), or 'default'")
            return MainConfig.defaultCiphers
        }
        return raw
    }
}
