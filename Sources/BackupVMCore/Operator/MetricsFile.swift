import Foundation

/// The Prometheus text file (node_exporter's textfile collector format) backup_vm writes to
/// `MetricsFile` after every job and every cron tick: per VM its last success, duration, bytes,
/// downtime, failures in a row and stale flag; per host the jobs running; the spool's queue.
/// Written to a temporary name beside it and renamed: a scrape never sees half a file, and two
/// workers finishing at once each leave a whole one.
public struct MetricsFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// What the file says, gathered from the spool, the slot locks and the storage.
    public struct Snapshot: Sendable {
        public var histories: [VMHistory]
        public var runningByHost: [String: Int]
        public var queued: Int
        public var active: Int
        public var generated: Date
    }

    public static func snapshot(configuration: Configuration, now: Date = Date()) -> Snapshot {
        let spool = Spool(root: configuration.main.spoolDir)
        let history = FleetHistory(configuration: configuration)
        let running = runningJobs(held: spool.locks.heldSlots().map(\.slot), hosts: configuration.main.hostServers)
        return Snapshot(
            histories: history.histories(of: configuration.schedule.entries.map(\.vm), now: now),
            runningByHost: running, queued: spool.names(in: .new).count, active: spool.names(in: .active).count,
            generated: now)
    }

    /// Held slots per host: `host.NAME.N` exactly (kvm1's count must not take kvm1.dc2's slots).
    static func runningJobs(held: [String], hosts: [String]) -> [String: Int] {
        var running: [String: Int] = [:]
        for host in hosts {
            let prefix = "host.\(host)."
            running[host] = held.filter { $0.hasPrefix(prefix) && Int($0.dropFirst(prefix.count)) != nil }.count
        }
        return running
    }

    public static func render(_ s: Snapshot) -> String {
        var out = MetricsText()
        out.family(
            "backup_vm_last_success_timestamp_seconds", "Unix time the VM's last successful backup job finished.")
        for h in s.histories { if let t = h.lastSuccess?.finished { out.sample(vm: h.vm, t.timeIntervalSince1970) } }
        out.family("backup_vm_last_duration_seconds", "How long the VM's last backup job ran, done or failed.")
        for h in s.histories { if let d = h.lastJob?.durationSeconds { out.sample(vm: h.vm, d) } }
        out.family("backup_vm_last_bytes", "Bytes the VM's newest committed backup stored.")
        for h in s.histories { if let b = h.newestBackup { out.sample(vm: h.vm, Double(b.storedBytes)) } }
        out.family("backup_vm_last_downtime_seconds", "How long the VM was not running for its newest backup.")
        for h in s.histories { if let b = h.newestBackup { out.sample(vm: h.vm, b.downtimeSeconds) } }
        out.family("backup_vm_consecutive_failures", "Backup jobs of the VM that failed since its last success.")
        for h in s.histories { out.sample(vm: h.vm, Double(h.consecutiveFailures)) }
        out.family("backup_vm_stale", "1 when the VM has no good backup younger than StaleAfterHours.")
        for h in s.histories { out.sample(vm: h.vm, h.stale ? 1 : 0) }
        out.family("backup_vm_restore_test_ok", "1 when the VM's last scheduled restore test booted, 0 when not.")
        for h in s.histories {
            if let t = h.lastRestoreTest { out.sample(vm: h.vm, t.status == .done ? 1 : 0) }
        }
        out.family("backup_vm_running_jobs", "Backup jobs running on the hypervisor (its held slots).")
        for (host, n) in s.runningByHost.sorted(by: { $0.key < $1.key }) {
            out.sample(labels: [("host", host)], Double(n))
        }
        out.family("backup_vm_spool_jobs", "Jobs in the spool by state: queued (new/) and running (active/).")
        out.sample(labels: [("state", "queued")], Double(s.queued))
        out.sample(labels: [("state", "running")], Double(s.active))
        out.family("backup_vm_metrics_generated_timestamp_seconds", "Unix time this file was written.")
        out.sample(labels: [], s.generated.timeIntervalSince1970)
        return out.text
    }

    /// Writes the file atomically (Files.replaceFile: temporary file, fsync, rename), readable by
    /// the exporter's user. One writer at a time in this process: the temporary name is per process.
    public func write(_ snapshot: Snapshot) throws {
        let text = Self.render(snapshot)
        try Self.lock.withLock { try Files.replaceFile(path, contents: Array(text.utf8), mode: 0o644) }
    }

    private static let lock = NSLock()
}

/// Prometheus text exposition format 0.0.4: HELP and TYPE lines, then samples; label values escaped.
struct MetricsText {
    private(set) var text = ""
    private var name = ""

    mutating func family(_ name: String, _ help: String) {
        self.name = name
        text += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
    }

    mutating func sample(vm: String, _ value: Double) { sample(labels: [("vm", vm)], value) }

    mutating func sample(labels: [(String, String)], _ value: Double) {
        let rendered =
            labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        text += "\(name)\(rendered) \(Self.number(value))\n"
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.3f", v)
    }
}
