/// Names that end up in remote shell command lines and in paths on the backup server (VM names, host
/// names, logical volumes) are checked against a conservative character set before use. The check is
/// deliberately stricter than libvirt or LVM: a name that passes can be quoted and joined into paths
/// without any chance of escaping a directory or a shell word.
public enum SafeName {
    /// What a VM name may contain; says so in the errors it produces.
    public static let vmExpectation = "a VM name of 1-64 characters from A-Z a-z 0-9 . _ + - not starting with . or -"
    public static let hostExpectation =
        "a host name of 1-253 characters from A-Z a-z 0-9 . _ - not starting with . or -"
    public static let lvExpectation = "a logical volume as LV, VG/LV or /dev/VG/LV with names from A-Z a-z 0-9 . _ + -"

    public static func isValidVMName(_ name: String) -> Bool {
        isToken(name, maxLength: 64, extra: "._+-")
    }

    public static func isValidHostName(_ name: String) -> Bool {
        isToken(name, maxLength: 253, extra: "._-")
    }

    /// LV references as an operator writes them in ExcludeLVs: `lv`, `vg/lv` or `/dev/vg/lv`.
    public static func isValidLVReference(_ reference: String) -> Bool {
        var parts = reference.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if reference.hasPrefix("/dev/") {
            parts.removeFirst(2)
            guard parts.count == 2 else { return false }
        }
        guard (1...2).contains(parts.count) else { return false }
        return parts.allSatisfy { isToken($0, maxLength: 127, extra: "._+-") }
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
