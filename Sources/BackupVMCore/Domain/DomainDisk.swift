/// One disk of a domain, as its XML describes it.
public struct DomainDisk: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable { case file, block }
    public enum Format: String, Sendable, Codable { case raw, qcow2 }

    /// The guest's device name (vda, sdb): unique within a domain, used to name stored images.
    public var target: String
    public var kind: Kind
    public var format: Format
    /// Absolute path on the hypervisor: the image file or the block device (e.g. /dev/vg0/web01).
    public var source: String

    public init(target: String, kind: Kind, format: Format, source: String) {
        self.target = target
        self.kind = kind
        self.format = format
        self.source = source
    }

    /// Is this disk named by an ExcludeLVs entry (`lv`, `vg/lv` or `/dev/vg/lv`)?
    public func isExcluded(by references: [String]) -> Bool {
        guard kind == .block else { return false }
        let parts = source.split(separator: "/").map(String.init)
        // /dev/VG/LV or /dev/mapper/VG-LV: compare on VG/LV and LV.
        let lv = parts.last ?? ""
        let vgLV = parts.count >= 2 ? parts[parts.count - 2] + "/" + lv : lv
        return references.contains { ref in
            ref == source || ref == vgLV || ref == lv || "/dev/" + ref == source
        }
    }
}

/// The state virsh reports for a domain.
public enum DomainState: String, Sendable, Codable {
    case running
    case paused
    case shutOff = "shut off"
    case other

    public init(virsh text: String) {
        switch text.trimmingCharacters(in: .whitespacesAndNewlines) {
        case "running", "idle", "in shutdown": self = .running
        case "paused", "pmsuspended": self = .paused
        case "shut off", "crashed": self = .shutOff
        default: self = .other
        }
    }
}
