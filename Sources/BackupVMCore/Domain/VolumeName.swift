/// A logical volume by name (`vg/lv`), whichever of LVM's paths a domain uses for it: `/dev/VG/LV`
/// or the device-mapper name `/dev/mapper/VG-LV`, in which LVM doubles every dash of either name
/// (VG `a-b`, LV `c` is `/dev/mapper/a--b-c`). Backup, ExcludeLVs and restore compare LVs through
/// this type, so the two spellings of one LV are never two different disks.
public struct VolumeName: Sendable, Hashable, Codable, CustomStringConvertible {
    public var vg: String
    public var lv: String

    public init(vg: String, lv: String) {
        self.vg = vg
        self.lv = lv
    }

    /// `vg/lv`, as LVM's commands take it.
    public var fullName: String { "\(vg)/\(lv)" }
    /// `/dev/vg/lv`, the path LVM makes for an active LV.
    public var path: String { "/dev/\(vg)/\(lv)" }
    /// `/dev/mapper/vg-lv` with every dash of both names doubled.
    public var mapperPath: String { "/dev/mapper/" + Self.escaped(vg) + "-" + Self.escaped(lv) }
    public var description: String { fullName }

    /// `vg/lv` (as recorded in a manifest); nil for anything else.
    public init?(fullName: String) {
        let parts = fullName.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, Self.isName(parts[0]), Self.isName(parts[1]) else { return nil }
        self.init(vg: parts[0], lv: parts[1])
    }

    /// The LV a path names by its shape: `/dev/VG/LV` or `/dev/mapper/VG-LV`. Only the hypervisor can
    /// tell whether it exists (or whether `/dev/md/x` is an LV at all); nil for other shapes, and for
    /// device-mapper names of LVM's internal layers (`vg-lv-real`, `vg-lv-cow`).
    public init?(path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0].isEmpty, parts[1] == "dev" else { return nil }
        if parts[2] == "mapper" {
            guard let name = Self.splitMapperName(parts[3]) else { return nil }
            self = name
        } else {
            guard Self.isName(parts[2]), Self.isName(parts[3]) else { return nil }
            self.init(vg: parts[2], lv: parts[3])
        }
    }

    /// Splits a device-mapper name at its one single dash; `--` is a dash inside a name.
    static func splitMapperName(_ name: String) -> VolumeName? {
        var fields: [String] = [""]
        var chars = name[...]
        while let c = chars.popFirst() {
            if c == "-" {
                if chars.first == "-" {
                    chars.removeFirst()
                    fields[fields.count - 1].append("-")
                } else {
                    fields.append("")
                }
            } else {
                fields[fields.count - 1].append(c)
            }
        }
        guard fields.count == 2, isName(fields[0]), isName(fields[1]) else { return nil }
        return VolumeName(vg: fields[0], lv: fields[1])
    }

    static func escaped(_ name: String) -> String { name.replacingOccurrences(of: "-", with: "--") }

    /// A VG or LV name LVM accepts and this tool handles (SafeName's LV characters).
    static func isName(_ s: String) -> Bool { SafeName.isValidLVName(s) }
}
