/// What a hypervisor says about one block device path of a domain: where its links lead and whether
/// LVM knows it as an LV (whichever path names it: /dev/VG/LV, /dev/mapper/VG-LV). ExcludeLVs
/// matches disks through this, and the planner snapshots exactly the disks that are LVs.
public struct BlockDevice: Sendable, Equatable {
    /// The path with every link resolved (`readlink -f`): two paths of one device have the same one.
    public var canonical: String?
    /// The LV behind the path; nil: not an LV (or not there).
    public var volume: LogicalVolume?

    public init(canonical: String?, volume: LogicalVolume?) {
        self.canonical = canonical
        self.volume = volume
    }
}
