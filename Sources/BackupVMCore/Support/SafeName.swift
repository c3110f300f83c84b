/// Names that end up in remote shell command lines and in paths on the backup server (VM names, host
/// names, logical volumes) are checked against a conservative character set before use. The check is
/// deliberately stricter than libvirt or LVM: a name that passes can be quoted and joined into paths
/// without any chance of escaping a directory or a shell word.
public enum SafeName {
    /// What a VM name may contain; says so in the errors it produces.
    public static let vmExpectation = "a VM name of 1-64 characters from A-Z a-z 0-9 . _ + - not starting with . or -"
    public static let hostExpectation =
        "a host name of 1-253 characters from A-Z a-z 0-9 . _ - not starting with . or -"
    public static let lvExpectation =
        "a logical volume as LV, VG/LV, /dev/VG/LV or /dev/mapper/VG-LV, or a block device by its path under /dev/,"
        + " with names from A-Z a-z 0-9 . _ + - (and : in device paths)"

    public static func isValidVMName(_ name: String) -> Bool {
        isToken(name, maxLength: 64, extra: "._+-")
    }

    public static func isValidHostName(_ name: String) -> Bool {
        isToken(name, maxLength: 253, extra: "._-")
    }

    /// A volume group or logical volume name.
    public static func isValidLVName(_ name: String) -> Bool { isToken(name, maxLength: 127, extra: "._+-") }

    /// Disk references as an operator writes them in ExcludeLVs: an LV as `lv`, `vg/lv`, `/dev/vg/lv`
    /// or `/dev/mapper/vg-lv`, or any block device by a path under /dev/ (`/dev/sdb`,
    /// `/dev/disk/by-id/...`).
    public static func isValidLVReference(_ reference: String) -> Bool {
        if reference.hasPrefix("/dev/") { return isDevicePath(reference) }
        let parts = reference.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count) else { return false }
        return parts.allSatisfy(isValidLVName)
    }

    /// An NBD export name as libvirt's backup job names it (after the disk's target, `vda`): it goes
    /// into an nbd URI on a hypervisor's command line.
    public static func isValidExportName(_ name: String) -> Bool { isToken(name, maxLength: 64, extra: "._-") }

    /// A path under /dev/ made of names (`:` allowed too: /dev/disk/by-path names have it); no `.`
    /// or `..` component, nothing a shell would read.
    public static func isDevicePath(_ path: String) -> Bool {
        guard path.hasPrefix("/dev/"), path.utf8.count <= 4096 else { return false }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2)
        return !parts.isEmpty && parts.allSatisfy { isToken(String($0), maxLength: 255, extra: "._+-:") }
    }

    private static func isToken(_ s: String, maxLength: Int, extra: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= maxLength else { return false }
        guard let first = s.unicodeScalars.first, first != ".", first != "-" else { return false }
        return s.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
                || extra.unicodeScalars.contains(c)
        }
    }
}
