import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The domain XML a restore defines: the VM itself with its restored disks, or a copy under a new
/// name (`restore --as`). Every disk of the stored XML is accounted for: restored (its new path
/// written), excluded from the backup (kept for the VM itself, its own; dropped from a copy), or a
/// CD-ROM or floppy; anything else is refused. A disk that cannot be rewritten is never left as it
/// was: in a copy it would still be the original's.
extension DomainXML {
    /// A copy under another name: new <name>, no <uuid> (libvirt makes one), no <mac address>
    /// (libvirt makes new ones, so the copy does not clash with the original on the network), no UEFI
    /// variable store of the original's, disk sources replaced as given and `dropped` (excluded)
    /// disks removed, a floppy's medium (writable, the original's) removed, and the files its
    /// consoles and logs write renamed (HostFiles).
    public static func renamed(
        _ xml: String, from oldName: String, to newName: String,
        diskSources: [String: String], droppingDisks dropped: Set<String> = []
    ) throws(Problem) -> String {
        let (doc, root) = try storedDomain(xml)
        guard let name = root.elements(forName: "name").first else {
            throw Problem(description: "stored domain XML has no <name>")
        }
        name.stringValue = newName
        for uuid in root.elements(forName: "uuid") { uuid.detach() }
        try rewriteDisks(root, diskSources, excluded: dropped, forCopy: true)
        for mac in try elements(root, "devices/interface/mac") { mac.detach() }
        for device in try elements(root, sharedWithOriginal) { device.detach() }
        // The original's UEFI variable store: libvirt makes the copy its own from the template.
        for nvram in try elements(root, "os/nvram") { nvram.detach() }
        try HostFiles.rename(root, from: oldName, to: newName)
        return doc.xmlString(options: [.nodePrettyPrint])
    }

    /// Devices through which a copy would reach what is the original's own: host devices and USB
    /// redirection (a passed-through disk or controller holds the original's data), shared host
    /// directories, shared memory, nvdimm and virtio-pmem memory backed by the original's file, a
    /// smartcard or input device passed through. A copy runs beside the original: it gets none of them
    /// (the restore names what was left out).
    static let sharedWithOriginal =
        "devices/hostdev | devices/redirdev | devices/filesystem | devices/shmem"
        + " | devices/memory[@model='nvdimm' or @model='virtio-pmem'] | devices/smartcard"
        + " | devices/input[@type='passthrough' or @type='evdev']"

    /// What `renamed` leaves out of a copy because the original's own is behind it (for the log).
    public static func sharedDevices(of xml: String) throws(Problem) -> [String] {
        let (_, root) = try storedDomain(xml)
        return try elements(root, sharedWithOriginal).map { element in
            let type =
                element.attribute(forName: "type")?.stringValue ?? element.attribute(forName: "model")?.stringValue
            return element.name.map { "<\($0)\(type.map { " \($0)" } ?? "")>" } ?? "?"
        }
    }

    /// The same XML with its disk sources replaced (restore of the VM itself, also to other paths);
    /// `excluded` disks stay as they are (they are the VM's own and were not backed up).
    public static func withDiskSources(
        _ xml: String, _ diskSources: [String: String], keeping excluded: Set<String> = []
    )
        throws(Problem) -> String
    {
        let (doc, root) = try storedDomain(xml)
        try rewriteDisks(root, diskSources, excluded: excluded, forCopy: false)
        return doc.xmlString(options: [.nodePrettyPrint])
    }

    private static func rewriteDisks(
        _ root: XMLElement, _ diskSources: [String: String], excluded: Set<String>, forCopy: Bool
    ) throws(Problem) {
        var rewritten: Set<String> = []
        for disk in try elements(root, "devices/disk") {
            let device = disk.attribute(forName: "device")?.stringValue ?? "disk"
            if device == "cdrom" { continue }  // a read-only medium: libvirt never lets the guest write it
            if device == "floppy" {
                if forCopy { for source in disk.elements(forName: "source") { source.detach() } }
                continue
            }
            guard let target = disk.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue else {
                throw Problem(description: "stored domain XML: a disk has no <target dev=...>")
            }
            if let path = diskSources[target] {
                try setSource(disk, target: target, to: path)
                rewritten.insert(target)
            } else if excluded.contains(target) {
                if forCopy { disk.detach() }
            } else {
                let source = disk.elements(forName: "source").first?.xmlString ?? "no <source>"
                throw Problem(
                    description: "disk \(target) (\(source)) of the stored domain XML was neither restored nor excluded"
                        + " from the backup; \(forCopy ? "the copy would use the original's disk" : "it has no disk")")
            }
        }
        if let missing = Set(diskSources.keys).subtracting(rewritten).sorted().first {
            throw Problem(description: "the stored domain XML has no disk \(missing), which the backup holds")
        }
    }

    /// A file disk gets its path in `<source file>`, a block disk (an LV) in `<source dev>`; any
    /// other kind of disk (a libvirt volume, a network disk) has no place for it.
    private static func setSource(_ disk: XMLElement, target: String, to path: String) throws(Problem) {
        let type = disk.attribute(forName: "type")?.stringValue ?? "file"
        let name = type == "file" ? "file" : type == "block" ? "dev" : nil
        guard let name, let attribute = disk.elements(forName: "source").first?.attribute(forName: name) else {
            throw Problem(
                description:
                    "disk \(target) of the stored domain XML is of type '\(type)' without a <source \(name ?? "file")>:"
                    + " it cannot be given its restored path \(path)")
        }
        attribute.stringValue = path
        // The restored image is whole: a backing chain of the original's must not come with it.
        for backing in disk.elements(forName: "backingStore") { backing.detach() }
    }
}
