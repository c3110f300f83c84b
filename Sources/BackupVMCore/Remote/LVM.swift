import Foundation

/// A logical volume on a hypervisor.
public struct LogicalVolume: Sendable, Equatable, Codable {
    public var vg: String
    public var lv: String
    public var sizeBytes: Int64

    public var path: String { "/dev/\(vg)/\(lv)" }
    public var fullName: String { "\(vg)/\(lv)" }
    public var name: VolumeName { VolumeName(vg: vg, lv: lv) }
}

/// LVM on one hypervisor, over ssh. Snapshots this tool makes are named `LV-bvmsnap-ID` so it can
/// recognise its own leftovers and never touches anyone else's.
public struct LVM: Sendable {
    public let host: RemoteHost

    public init(host: RemoteHost) { self.host = host }

    /// Where each of these block device paths leads and which are LVs (LVM itself reads /dev/VG/LV and
    /// /dev/mapper/VG-LV alike). One line per path, by its index: paths never split the answer. A path
    /// `lvs` does not know is not an LV only if `lvs` answers at all: an LVM that does not (a lock
    /// held, a VG being changed) fails the question instead of calling every disk a plain device (a
    /// restore would then write an LV in place instead of beside it, and a hot backup fall back to cold).
    public func resolve(_ devices: [String]) throws(RemoteError) -> [String: BlockDevice] {
        guard !devices.isEmpty else { return [:] }
        let script = devices.enumerated().map { i, d in
            let q = ShellQuote.quote(d)
            return """
                c=$(readlink -f -- \(q) 2>/dev/null || true); \
                l=$(lvs --noheadings --nosuffix --units b --separator ' ' -o vg_name,lv_name,lv_size \(q) 2>/dev/null \
                | head -n 1 || true); \
                if [ -z "$l" ] && command -v lvs >/dev/null && ! e=$(lvs --noheadings -o lv_name 2>&1 >/dev/null); then \
                printf 'lvs does not answer (%s): cannot tell whether %s is an LV\\n' "$e" \(q) >&2; exit 3; fi; \
                printf '%d\\t%s\\t%s\\n' \(i) "$c" "$l"
                """
        }.joined(separator: "; ")
        let out = try host.run(script, what: "lvs")
        var result: [String: BlockDevice] = [:]
        for line in out.split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, let i = Int(parts[0]), devices.indices.contains(i) else { continue }
            let f = parts[2].split(separator: " ").map(String.init)
            let volume = f.count == 3 ? Int64(f[2]).map { LogicalVolume(vg: f[0], lv: f[1], sizeBytes: $0) } : nil
            result[devices[i]] = BlockDevice(canonical: parts[1].isEmpty ? nil : parts[1], volume: volume)
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
        try host.run(Self.removeLoop(snapshot.name), what: "lvremove \(snapshot.fullName)")
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
}
