import Foundation

/// A logical volume on a hypervisor.
public struct LogicalVolume: Sendable, Equatable, Codable {
    public var vg: String
    public var lv: String
    public var sizeBytes: Int64

    public var path: String { "/dev/\(vg)/\(lv)" }
    public var fullName: String { "\(vg)/\(lv)" }
}

/// LVM on one hypervisor, over ssh. Snapshots this tool makes are named `LV-bvmsnap-ID` so it can
/// recognise its own leftovers and never touches anyone else's.
public struct LVM: Sendable {
    public let host: RemoteHost

    public init(host: RemoteHost) { self.host = host }

    /// Which of these block devices are LVs (nil: a plain block device, copied with the VM off).
    public func resolve(_ devices: [String]) throws(RemoteError) -> [String: LogicalVolume] {
        guard !devices.isEmpty else { return [:] }
        let script = devices.map { d in
            "printf '%s\\t' \(ShellQuote.quote(d)); lvs --noheadings --nosuffix --units b --separator ' ' -o vg_name,lv_name,lv_size \(ShellQuote.quote(d)) 2>/dev/null | head -n 1 || echo; echo"
        }.joined(separator: "; ")
        let out = try host.run(script + "; true", what: "lvs")
        var result: [String: LogicalVolume] = [:]
        for line in out.split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let f = parts[1].split(separator: " ").map(String.init)
            if f.count == 3, let size = Int64(f[2]) {
                result[parts[0]] = LogicalVolume(vg: f[0], lv: f[1], sizeBytes: size)
            }
        }
        return result
    }

    /// Creates the snapshot `name` of `origin`, sized `N%` of the origin or absolutely (lvcreate's `2G`).
    public func createSnapshot(named name: String, of origin: LogicalVolume, size: String) throws(RemoteError) {
        let sizeArg = size.hasSuffix("%") ? "-l \(ShellQuote.quote(size + "ORIGIN"))" : "-L \(ShellQuote.quote(size))"
        try host.run(
            "lvcreate -q -s \(sizeArg) -n \(ShellQuote.quote(name)) \(ShellQuote.quote(origin.fullName)) >/dev/null",
            what: "lvcreate snapshot of \(origin.fullName)")
    }

    /// Is the snapshot still valid (not overflowed)? LVM marks an overflowed snapshot invalid
    /// (lv_attr 'I' in the fifth place) and reports it 100% full.
    public func snapshotStatus(_ snapshot: LogicalVolume) throws(RemoteError) -> SnapshotStatus {
        let out = try host.run(
            "lvs --noheadings -o lv_attr,snap_percent \(ShellQuote.quote(snapshot.fullName))",
            what: "lvs \(snapshot.fullName)")
        let f = out.split(whereSeparator: { $0 == " " || $0.isNewline }).map(String.init)
        guard let attr = f.first, attr.count >= 5 else {
            return SnapshotStatus(
                valid: false, detail: "lvs said '\(out.trimmingCharacters(in: .whitespacesAndNewlines))'")
        }
        let state = attr[attr.index(attr.startIndex, offsetBy: 4)]
        let percent = f.count > 1 ? Double(f[1]) ?? 0 : 0
        let valid = state != "I" && percent < 100
        return SnapshotStatus(valid: valid, detail: "attr \(attr), \(f.count > 1 ? f[1] : "?")% used")
    }

    /// Removes a snapshot of ours, retrying while it is briefly "in use" (udev, a reader closing).
    public func removeSnapshot(_ snapshot: LogicalVolume) throws(RemoteError) {
        precondition(BackupNames.isOurSnapshot(snapshot.lv), "only our own snapshots are removed")
        let q = ShellQuote.quote(snapshot.fullName)
        try host.run(
            """
            e=$(mktemp); trap 'rm -f "$e"' EXIT; \
            for i in 1 2 3 4 5 6 7 8 9 10; do lvs \(q) >/dev/null 2>&1 || exit 0; \
            lvremove -q -f \(q) >/dev/null 2>"$e" && exit 0; sleep 1; done; \
            cat "$e" >&2; exit 1
            """, what: "lvremove \(snapshot.fullName)")
    }

    /// Our snapshots (by name) of these origin LVs that are still there: leftovers of a killed job.
    public func leftoverSnapshots(of origins: [LogicalVolume]) throws(RemoteError) -> [LogicalVolume] {
        guard !origins.isEmpty else { return [] }
        let out = try host.run(
            "lvs --noheadings --nosuffix --units b --separator ' ' -o vg_name,lv_name,origin,lv_size 2>/dev/null || true",
            what: "lvs")
        let wanted = Set(origins.map(\.fullName))
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 4, BackupNames.isOurSnapshot(f[1]), wanted.contains(f[0] + "/" + f[2]) else {
                return nil
            }
            return LogicalVolume(vg: f[0], lv: f[1], sizeBytes: Int64(f[3]) ?? 0)
        }
    }

    /// Creates an LV of at least `bytes` for a restore (nothing when it exists and is large enough).
    public func ensureVolume(path: String, bytes: Int64) throws(RemoteError) {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count == 3, parts[0] == "dev" else {
            throw .protocolViolation(host: host.name, what: "restore to \(path)", detail: "expected /dev/VG/LV")
        }
        let vg = ShellQuote.quote(parts[1])
        let lv = ShellQuote.quote(parts[2])
        let p = ShellQuote.quote(path)
        try host.run(
            """
            if [ -b \(p) ]; then size=$(blockdev --getsize64 \(p)); \
            [ "$size" -ge \(bytes) ] || { printf '%s has %s bytes, the backup needs %s; refusing to restore into a smaller LV\\n' \
            \(p) "$size" \(bytes) >&2; exit 4; }; \
            else lvcreate -q -y -L \(bytes)b -n \(lv) \(vg) >/dev/null; fi
            """, what: "preparing \(path)")
    }
}
