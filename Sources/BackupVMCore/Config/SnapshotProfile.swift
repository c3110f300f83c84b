/// How a VM is frozen for its backup.
public enum SnapshotMode: String, CaseIterable, Sendable {
    /// Shut the VM down (ACPI), snapshot or copy, start it again.
    case cold
    /// Save the RAM state (`virsh save`), snapshot the LVs, `virsh restore`. Needs every disk on LVM.
    case hot
    /// The VM keeps running: libvirt's backup API (a pull-mode job) exports each disk's content as it
    /// was when the job started; file disks and LVs alike, no snapshot LV, no save.
    case live
}

/// vmsnapshot.d/VM_NAME, over vmsnapshot.d/default: a VM's file sets what it needs and inherits every
/// other key from `default`.
public struct SnapshotProfile: Sendable, Equatable {
    public var mode: SnapshotMode
    /// Absolute directory on the hypervisor with room for one compressed copy of the VM.
    public var workPath: String
    public var excludeLVs: [String]
    public var shutdownTimeout: Int?
    public var forceOff: Bool?
    /// LVM snapshot size: `N%` of the origin LV or an absolute size like `2G`.
    public var snapshotSize: String
    /// Mode=live on a host that cannot do it (no backup API, no nbdcopy): the mode to use instead
    /// (cold or hot, said in the log and the manifest); nil: the backup fails naming what is missing.
    public var liveFallback: SnapshotMode? = nil
    /// Mode=live: seconds the guest's file systems may stay frozen around the job's begin (freeze,
    /// begin, thaw); longer, and they are thawed and the backup fails (a begin waiting on libvirt's
    /// lock must not keep a guest frozen for CommandTimeout).
    public var freezeTimeout: Int = 10
    /// `backup_vm restore-test`: an extended regular expression (grep -E) a line of the booted copy's
    /// serial console must match; nil: the guest agent answering, else running RestoreTestSeconds.
    public var restoreTestReady: String? = nil
    /// How long a restore test waits for that sign of life.
    public var restoreTestTimeout: Int = 300
    /// Without a console line or an agent to wait for: how long the copy must keep running.
    public var restoreTestSeconds: Int = 30
    /// The cron tick queues a restore test of the VM's newest backup when its last one is older than
    /// this many days (0: never).
    public var restoreTestEveryDays: Int = 0
    /// The cron tick queues a verify job of the VM's backups when one of them was last verified longer
    /// ago than this many days (0: never); a chunk verified within that time is not read again.
    public var verifyEveryDays: Int = 0

    public static let knownKeys = [
        "Mode", "WorkPath", "ExcludeLVs", "ShutdownTimeout", "ForceOff", "SnapshotSize", "LiveFallback",
        "FreezeTimeout", "RestoreTestReady", "RestoreTestTimeout", "RestoreTestSeconds", "RestoreTestEveryDays",
        "VerifyEveryDays",
    ]

    /// Parses one profile file; `base` supplies the keys it does not set (nil for `default` itself).
    public static func parse(_ text: String, displayName file: String, base: SnapshotProfile?) -> (
        SnapshotProfile?, [ConfigDiagnostic]
    ) {
        let (assignments, syntax) = ShellAssignments.parse(text, file: file)
        var r = AssignmentReader(file: file, assignments: assignments, knownKeys: knownKeys)
        var profile =
            base
            ?? SnapshotProfile(
                mode: .cold, workPath: "", excludeLVs: [], shutdownTimeout: nil,
                forceOff: nil, snapshotSize: "20%")
        if r.has("Mode") { profile.mode = r.choice("Mode", default: profile.mode) }
        if let p = r.path("WorkPath") { profile.workPath = p }
        if base == nil && !r.has("WorkPath") {
            r.fail("WorkPath", "missing in the default profile; expected an absolute directory on the hypervisor")
        }
        if let raw = r.string("ExcludeLVs") {
            var lvs: [String] = []
            for lv in raw.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }).map(String.init) {
                if SafeName.isValidLVReference(lv) {
                    lvs.append(lv)
                } else {
                    r.fail("ExcludeLVs", "'\(lv)' is not valid; expected \(SafeName.lvExpectation)")
                }
            }
            profile.excludeLVs = lvs
        }
        if r.has("ShutdownTimeout") {
            profile.shutdownTimeout = r.integer("ShutdownTimeout", in: 1...86400, default: 300)
        }
        if r.has("ForceOff") { profile.forceOff = r.bool("ForceOff", default: false) }
        if let raw = r.string("SnapshotSize") {
            if SnapshotProfile.isValidSnapshotSize(raw) {
                profile.snapshotSize = raw
            } else {
                r.fail("SnapshotSize", "expected a percentage of the origin LV (1%-100%) or a size like 512M, 2G")
            }
        }
        if r.has("LiveFallback") {
            let fallback = r.choice("LiveFallback", default: SnapshotMode.cold)
            if fallback == .live { r.fail("LiveFallback", "expected cold or hot (the mode used when live cannot be)") }
            profile.liveFallback = fallback == .live ? nil : fallback
        }
        if r.has("FreezeTimeout") {
            profile.freezeTimeout = r.integer("FreezeTimeout", in: SnapshotProfile.freezeTimeouts, default: 10)
        }
        parseRestoreTest(&r, into: &profile)
        let diagnostics = syntax + r.diagnostics
        return (diagnostics.isEmpty ? profile : nil, diagnostics)
    }

    static func parseRestoreTest(_ r: inout AssignmentReader, into profile: inout SnapshotProfile) {
        if let re = r.string("RestoreTestReady") {
            // It is passed to grep -E as one quoted argument; a line break could never match a line.
            if re.unicodeScalars.contains(where: { $0.value < 32 }) {
                r.fail("RestoreTestReady", "expected a regular expression on one line")
            } else {
                profile.restoreTestReady = re
            }
        }
        if r.has("RestoreTestTimeout") {
            profile.restoreTestTimeout = r.integer("RestoreTestTimeout", in: 10...86400, default: 300)
        }
        if r.has("RestoreTestEveryDays") {
            profile.restoreTestEveryDays = r.integer("RestoreTestEveryDays", in: 0...366, default: 0)
        }
        if r.has("VerifyEveryDays") {
            profile.verifyEveryDays = r.integer("VerifyEveryDays", in: 0...366, default: 0)
        }
        if r.has("RestoreTestSeconds") {
            profile.restoreTestSeconds = r.integer("RestoreTestSeconds", in: 1...3600, default: 30)
        }
        // Without a console line to wait for, the run is waited for within RestoreTestTimeout: a longer
        // one could never pass.
        if profile.restoreTestReady == nil && profile.restoreTestSeconds >= profile.restoreTestTimeout {
            r.fail(
                r.has("RestoreTestSeconds") ? "RestoreTestSeconds" : "RestoreTestTimeout",
                "RestoreTestSeconds (\(profile.restoreTestSeconds)) must be less than RestoreTestTimeout (\(profile.restoreTestTimeout))"
            )
        }
    }

    /// FreezeTimeout's range: a second at least (a freeze and a begin take about 0.3 s on the lab),
    /// two minutes at most (longer defeats its purpose; the remote script's own limit is CommandTimeout).
    static let freezeTimeouts = 1...120

    static func isValidSnapshotSize(_ s: String) -> Bool {
        if s.hasSuffix("%") {
            guard let n = Int(s.dropLast()) else { return false }
            return (1...100).contains(n)
        }
        guard let unit = s.last, "KMGTkmgt".contains(unit), let n = Int(s.dropLast()) else { return false }
        return n > 0
    }
}
