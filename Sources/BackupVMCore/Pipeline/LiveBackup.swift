import Foundation

/// What a hypervisor offers for Mode=live: libvirt's backup API (libvirt ≥ 7.2 with QEMU ≥ 6.0,
/// `virsh backup-begin`) and a reader of its NBD exports that can write to a pipe (nbdcopy; qemu-img
/// cannot stream to stdout).
public struct LiveSupport: Sendable, Equatable {
    /// libvirt's and QEMU's versions as virsh reports them (nil: not found in its answer).
    public var libvirt: String?
    public var qemu: String?
    /// What is missing, each naming how to get it; empty: live backups can run here.
    public var missing: [String]

    public var isAvailable: Bool { missing.isEmpty }

    public static let minimumLibvirt = [7, 2]
    public static let minimumQEMU = [6, 0]

    /// One script's lines, shared by `doctor` and the planner: `virsh version` and the tools.
    public static let probeScript = """
        virsh version 2>&1 | sed -n 's/^Using library: libvirt /livelibvirt /p; s/^Running hypervisor: QEMU /liveqemu /p'; \
        virsh help backup-begin >/dev/null 2>&1 || echo "livemissing backup-begin"; \
        for t in nbdcopy nbdinfo; do command -v "$t" >/dev/null || echo "livemissing $t"; done
        """

    /// Reads the lines of `probeScript` (other lines are ignored).
    public init(probeOutput: String) {
        var libvirt: String?
        var qemu: String?
        var lacking: [String] = []
        for line in probeOutput.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard f.count == 2 else { continue }
            switch f[0] {
            case "livelibvirt": libvirt = f[1].trimmingCharacters(in: .whitespaces)
            case "liveqemu": qemu = f[1].trimmingCharacters(in: .whitespaces)
            case "livemissing": lacking.append(f[1])
            default: continue
            }
        }
        var missing: [String] = []
        if !Self.atLeast(libvirt, Self.minimumLibvirt) {
            missing.append("libvirt ≥ 7.2 with the backup API (found \(libvirt ?? "none"))")
        } else if lacking.contains("backup-begin") {
            missing.append("virsh backup-begin (libvirt ≥ 7.2, package libvirt-clients)")
        }
        if !Self.atLeast(qemu, Self.minimumQEMU) { missing.append("QEMU ≥ 6.0 (found \(qemu ?? "none"))") }
        for tool in ["nbdcopy", "nbdinfo"] where lacking.contains(tool) {
            missing.append("\(tool) (apt-get install libnbd-bin)")
        }
        self.init(libvirt: libvirt, qemu: qemu, missing: missing)
    }

    public init(libvirt: String?, qemu: String?, missing: [String]) {
        self.libvirt = libvirt
        self.qemu = qemu
        self.missing = missing
    }

    /// Is the dotted version `text` at least `minimum`?
    static func atLeast(_ text: String?, _ minimum: [Int]) -> Bool {
        guard let text else { return false }
        let parts = text.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        for (i, want) in minimum.enumerated() {
            let have = i < parts.count ? parts[i] : 0
            if have != want { return have > want }
        }
        return true
    }
}

/// A running pull-mode backup job: libvirt's NBD server on a unix socket in `directory` (ours, in
/// the VM's working directory), one export per disk; the scratch files of the copy-before-write
/// blocks are in the same directory.
public struct LiveJob: Sendable, Equatable {
    public var directory: String
    /// Export name by disk target (libvirt names them after the target; read from backup-dumpxml).
    public var exports: [String: String]

    public var socket: String { LiveJob.socket(in: directory) }

    public init(directory: String, exports: [String: String]) {
        self.directory = directory
        self.exports = exports
    }

    public static func socket(in directory: String) -> String { directory + "/nbd.sock" }
    public static func scratch(in directory: String, target: String) -> String {
        directory + "/" + target + ".scratch"
    }
    /// A unix socket's path holds at most 107 bytes (sun_path).
    public static let maximumSocketPath = 107

    /// Only `A-Z a-z 0-9 / . _ + -`: a path that XML, a URI and a shell pattern all spell the same.
    public static func isPlainPath(_ path: String) -> Bool {
        path.hasPrefix("/")
            && path.unicodeScalars.allSatisfy { c in
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
                    || "/._+-".unicodeScalars.contains(c)
            }
    }

    /// The URI nbdcopy reads an export from; the socket path is percent-encoded (it is a query value).
    public func uri(export: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "/-._~")
        let socket = self.socket.addingPercentEncoding(withAllowedCharacters: allowed) ?? self.socket
        return "nbd+unix:///\(export)?socket=\(socket)"
    }
}

/// What a live backup job is begun with.
public struct LiveJobRequest: Sendable, Equatable {
    public var vm: String
    /// The job's directory (socket, scratch files, its reservation of scratch space); made by the begin.
    public var directory: String
    /// The disks backed up: their sources size what the scratch files may grow to (ScratchRoom).
    public var disks: [DomainDisk]
    /// Every other disk of the domain (named `backup="no"`: an unlisted disk would be backed up).
    public var excluded: [String]
    /// Freeze the file systems with the guest agent for the begin (else only the sysrq sync).
    public var quiesce: Bool
    /// Seconds the file systems may stay frozen (freeze, begin, thaw): FreezeTimeout.
    public var freezeTimeout: Int

    public init(
        vm: String, directory: String, disks: [DomainDisk], excluded: [String], quiesce: Bool, freezeTimeout: Int
    ) {
        self.vm = vm
        self.directory = directory
        self.disks = disks
        self.excluded = excluded
        self.quiesce = quiesce
        self.freezeTimeout = freezeTimeout
    }
}

/// How consistent a live backup's disks are with each other and with the guest's file systems.
public enum Consistency: String, Codable, Sendable {
    /// The guest agent froze the file systems for the moment the job started.
    case application
    /// As after a power cut (the sysrq emergency sync was sent first): journaling file systems recover.
    case crash
}

/// What the quiesce around a job's begin did.
public enum QuiesceResult: Sendable, Equatable {
    /// The agent froze this many file systems, and thawed them after the begin, this many
    /// milliseconds after the freeze began (nil: the thaw failed).
    case frozen(count: Int, milliseconds: Int?)
    /// No agent answered (not configured, not running): nothing was frozen; why, for the log; and
    /// whether the sysrq emergency sync was sent instead.
    case unavailable(String, synced: Bool)
}

/// The begin of a live backup job: its outcome and the quiesce around it.
public struct LiveBegin: Sendable, Equatable {
    public var outcome: VirshBackupJob.BeginOutcome
    /// nil when none was asked for, or when a job was running already (nothing was done).
    public var quiesce: QuiesceResult?
    /// The file systems were frozen and the thaw after the begin failed: the caller must thaw.
    public var thawFailed: Bool
    /// The room check before the begin (nil: none was made, a job was running already).
    public var scratch: Scratch?

    /// Bytes free on the job directory's file system, what this job's scratch may grow to, and what
    /// other live jobs under the same WorkPath may still need.
    public struct Scratch: Sendable, Equatable {
        public var available: Int64
        public var needed: Int64
        public var others: Int64
    }

    public init(outcome: VirshBackupJob.BeginOutcome, quiesce: QuiesceResult?, thawFailed: Bool) {
        self.outcome = outcome
        self.quiesce = quiesce
        self.thawFailed = thawFailed
    }
}

/// Live backups that cannot start or end as they must.
public enum LiveBackupError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The host lacks what live needs and the profile has no LiveFallback.
    case unsupported(vm: String, host: String, missing: [String])
    /// A backup job runs on the domain that this tool did not start (its socket is elsewhere).
    case foreignJob(vm: String, host: String, socket: String)
    /// A backup job of ours is still there after `virsh domjobabort`.
    case jobStillRunning(vm: String, host: String, directory: String)
    /// The socket's path is longer than a unix socket allows.
    case socketPathTooLong(path: String)
    /// libvirt did not name an export for this disk.
    case noExport(vm: String, target: String)
    /// The job's directory has characters that libvirt would spell differently in its answers.
    case unplainDirectory(path: String)
    /// The begin failed after the file systems were frozen, and so did their thaw.
    case thawFailed(vm: String, host: String, cause: String)
    /// The job's file system lacks room for what its scratch files may grow to (nothing was begun).
    case noScratchRoom(vm: String, host: String, directory: String, available: Int64, needed: Int64, others: Int64)
    /// While the copy ran, the room left on the scratch's file system fell under what the jobs there
    /// may still need: the job was ended before the file system filled.
    case scratchLow(vm: String, host: String, directory: String, available: Int64, outstanding: Int64)
    /// qemu paused the guest during the job (a write failed); `resumed` tells whether it runs again.
    case pausedByIOError(vm: String, host: String, condition: String, resumed: Bool, detail: String)
    /// Freeze, begin and thaw took longer than FreezeTimeout: thawed, and the job not begun or ended.
    case freezeTimeout(vm: String, host: String, seconds: Int)
    /// The job could not be ended (libvirtd or the connection away): recovery ends it.
    case jobNotEnded(vm: String, host: String, directory: String, cause: String, after: String?)

    public var description: String {
        switch self {
        case .unsupported(let vm, let host, let missing):
            return "Mode=live for \(vm) needs on \(host): \(missing.joined(separator: "; ")); install it, or set"
                + " LiveFallback=cold (or hot) in the VM's vmsnapshot.d profile to back it up that way meanwhile"
        case .foreignJob(let vm, let host, let socket):
            return "a backup job that backup_vm did not start runs on \(vm) on \(host) (NBD socket \(socket));"
                + " it was left alone: end it (`virsh domjobabort \(vm)`) when it is no longer needed"
        case .jobStillRunning(let vm, let host, let directory):
            return "the backup job of \(vm) on \(host) still runs after `virsh domjobabort`; its scratch files are"
                + " in \(directory): end it by hand (`virsh domjobabort \(vm)`), then remove that directory"
        case .socketPathTooLong(let path):
            return "the NBD socket path \(path) is longer than \(LiveJob.maximumSocketPath) bytes (the limit of a"
                + " unix socket): set a shorter WorkPath in the VM's vmsnapshot.d profile"
        case .noExport(let vm, let target):
            return "libvirt's backup job of \(vm) exports no disk \(target) (backup-dumpxml)"
        case .unplainDirectory(let path):
            return "the live backup job's directory \(path) may only have A-Z a-z 0-9 / . _ + - in it (libvirt"
                + " escapes other characters in its answers): set a plainer WorkPath in the VM's vmsnapshot.d profile"
        case .thawFailed(let vm, let host, let cause):
            return "\(cause); the file systems of \(vm) on \(host) were frozen and could not be thawed"
        case .noScratchRoom, .scratchLow, .pausedByIOError, .freezeTimeout, .jobNotEnded:
            return scratchDescription
        }
    }

    /// The descriptions of the faults of a running job: its scratch space, the guest, its end.
    private var scratchDescription: String {
        switch self {
        case .noScratchRoom(let vm, let host, let directory, let available, let needed, let others):
            let also = others > 0 ? ", and other live jobs in the same WorkPath may still need \(bytes(others))" : ""
            return "no room for the live backup job of \(vm) on \(host): the file system of \(directory) has"
                + " \(bytes(available)) free; its scratch files may grow to \(bytes(needed)) (the disks' allocated"
                + " sizes: what copy-before-write keeps if the guest overwrites every block during the copy)\(also),"
                + " plus \(bytes(ScratchRoom.margin)) to spare; nothing was begun: free space there or set WorkPath"
                + " in the VM's vmsnapshot.d profile to a larger file system"
        case .scratchLow(let vm, let host, let directory, let available, let outstanding):
            return "the file system of the live backup job of \(vm) on \(host) ran low during the copy"
                + " (\(bytes(available)) free in \(directory), the live jobs there may still need"
                + " \(bytes(outstanding))): the job was ended before it filled, the guest's writes were not hurt;"
                + " something else is writing there: free space or set WorkPath to a file system of its own"
        case .pausedByIOError(let vm, let host, let condition, let resumed, let detail):
            let then =
                resumed
                ? "the job was ended and \(vm) resumed (its failed write retried; the guest saw no error)"
                : "the job was ended but \(vm) could not be resumed (\(detail)): check its disks' file systems and"
                    + " run `virsh resume \(vm)` on \(host)"
            return "qemu paused \(vm) on \(host) during its live backup (\(condition): a write failed, e.g. on a"
                + " full scratch file system); \(then)"
        case .freezeTimeout(let vm, let host, let seconds):
            return "freezing the file systems of \(vm) on \(host) and beginning its live backup job took longer than"
                + " FreezeTimeout=\(seconds) s: the file systems were thawed and the job ended (libvirtd or the guest"
                + " agent slow or hung); raise FreezeTimeout in the VM's vmsnapshot.d profile if the guest needs longer"
        case .jobNotEnded(let vm, let host, let directory, let cause, let after):
            let failed = after.map { " after the backup failed (\($0))" } ?? ""
            return
                "the live backup job of \(vm) on \(host) could not be ended\(failed): \(cause); its recovery record is"
                + " kept: the daemon's next recovery pass (or the next backup of \(vm)) ends it and removes"
                + " \(directory)"
        default:
            return ""
        }
    }

    private func bytes(_ n: Int64) -> String { HumanUnits.size(n) }
}
