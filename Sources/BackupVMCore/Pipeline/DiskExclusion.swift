/// ExcludeLVs: which disks of a domain are left out of its backups, whichever path the domain or the
/// operator uses for a device. A reference names an LV (`lv`, `vg/lv`, `/dev/vg/lv`,
/// `/dev/mapper/vg-lv`) or any block device by a path under /dev/ (`/dev/sdb`,
/// `/dev/disk/by-id/...`). It excludes a block disk when both name the same LV (as LVM on the
/// hypervisor says, or by the path's shape when it cannot), or when both paths lead to the same
/// device there; a bare name is an LV's name (or, for a disk that is not an LV, its device's name).
struct DiskExclusion: Sendable {
    let references: [String]

    init(_ references: [String]) { self.references = references }

    /// Paths to ask the hypervisor about besides the disks' own (`vg/lv` as `/dev/vg/lv`).
    var devicePaths: [String] { references.compactMap(Self.path(of:)) }

    /// Does a reference name this disk? `devices`: the hypervisor's answer for the disks' paths and
    /// `devicePaths` (empty when it was not asked: then names are compared by their shape alone).
    func excludes(_ disk: DomainDisk, devices: [String: BlockDevice]) -> Bool {
        guard disk.kind == .block else { return false }
        let device = devices[disk.source]
        let volume = device?.volume?.name ?? VolumeName(path: disk.source)
        return references.contains { reference in
            if reference == disk.source { return true }
            guard let path = Self.path(of: reference) else {
                let name = volume?.lv ?? String(disk.source.split(separator: "/").last ?? "")
                return name == reference
            }
            let other = devices[path]
            let otherVolume = other?.volume?.name ?? VolumeName(path: path)
            if let volume, volume == otherVolume { return true }
            if let mine = device?.canonical, let theirs = other?.canonical { return mine == theirs }
            return false
        }
    }

    /// The device path a reference names; nil for a bare LV name.
    static func path(of reference: String) -> String? {
        if reference.hasPrefix("/") { return reference }
        return VolumeName(fullName: reference)?.path
    }
}
