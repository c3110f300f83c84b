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
