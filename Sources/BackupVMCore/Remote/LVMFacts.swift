/// What LVM says about an existing LV that a restore is to replace: enough to make its replacement
/// alike (size, segment type, stripes, thin pool, tags) and to see what must not be replaced blindly.
public struct VolumeFacts: Sendable, Equatable {
    public var sizeBytes: Int64
    /// lv_attr: the first letter says origin (`o`), snapshot (`s`), thin (`V`), raid (`r`), ...
    public var attr: String
    public var segtype: String
    public var stripes: Int
    public var stripeSizeBytes: Int64
    /// The thin pool of a thin LV ("" for others).
    public var pool: String
    public var tags: [String]

    /// Segment types a restore can make a replacement of: the others (raid, mirror, cache, vdo)
    /// would come back as a plain LV without their redundancy or cache, so they are refused.
    public static let replaceable: Set<String> = ["linear", "striped", "thin"]

    /// An origin of (COW) snapshots: they stay attached to it, so it is kept when replaced.
    public var hasSnapshots: Bool { attr.first == "o" || attr.first == "O" }
    public var isSnapshot: Bool { attr.first == "s" || attr.first == "S" }
    public var isThin: Bool { segtype == "thin" && !pool.isEmpty }

    /// lvs' answer for `-o lv_size,lv_attr,segtype,stripes,stripe_size,pool_lv,lv_tags` with `|`
    /// between the fields; nil when it said nothing (no such LV).
    init?(lvs line: String) {
        let f = line.trimmingCharacters(in: .whitespaces).split(separator: "|", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard f.count == 7, let size = Int64(f[0]) else { return nil }
        sizeBytes = size
        attr = f[1]
        segtype = f[2]
        stripes = Int(f[3]) ?? 1
        stripeSizeBytes = Int64(f[4]) ?? 0
        pool = f[5]
        tags = f[6].split(separator: ",").map(String.init)
    }

    static let fields = "lv_size,lv_attr,segtype,stripes,stripe_size,pool_lv,lv_tags"
}

/// A volume group's free space, and the LVs of interrupted restores of ours in it.
public struct GroupFacts: Sendable, Equatable {
    public var freeBytes: Int64
    public var extentBytes: Int64
    public var leftovers: [String]

    /// Space an LV of `bytes` takes: LVM rounds up to whole extents.
    public func allocated(_ bytes: Int64) -> Int64 {
        guard extentBytes > 0 else { return bytes }
        return (bytes + extentBytes - 1) / extentBytes * extentBytes
    }
}

/// A thin pool's size and how full its data is.
public struct PoolFacts: Sendable, Equatable {
    public var sizeBytes: Int64
    public var dataPercent: Double

    public var freeBytes: Int64 { Int64(Double(sizeBytes) * max(0, 100 - dataPercent) / 100) }
}
