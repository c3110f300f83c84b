import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// Reads and rewrites libvirt domain XML.
public enum DomainXML {
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The disks (device='disk') of a domain; cdroms and floppies are not backed up. Everything else
    /// that holds data and cannot be backed up whole fails with the reason, never silently skipped:
    /// network and volume disks, LUN passthrough, qcow2 overlays on a backing chain (only the overlay
    /// would be copied), other formats.
    public static func disks(of xml: String, vm: String) throws(Problem) -> [DomainDisk] {
        let doc = try parse(xml, what: "domain XML of \(vm)")
        var disks: [DomainDisk] = []
        for node in try elements(doc, "/domain/devices/disk") {
            if let disk = try disk(node, vm: vm) { disks.append(disk) }
        }
        guard !disks.isEmpty else { throw Problem(description: "\(vm) has no disks to back up") }
        if Set(disks.map(\.target)).count != disks.count {
            throw Problem(description: "\(vm): two disks share a target name")
        }
        return disks
    }

    /// One <disk> element: nil for a cdrom or floppy.
    static func disk(_ node: XMLElement, vm: String) throws(Problem) -> DomainDisk? {
        let device = node.attribute(forName: "device")?.stringValue ?? "disk"
        guard let target = node.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue,
            SafeName.isValidVMName(target)
        else {
            if device == "cdrom" || device == "floppy" { return nil }
            throw Problem(description: "\(vm): a disk has no usable <target dev=...>")
        }
        switch device {
        case "disk": break
        case "cdrom", "floppy": return nil
        default:
            throw Problem(
                description: "\(vm): disk \(target) is a '\(device)' device (passthrough); backup_vm cannot back it up"
                    + " and will not make a backup without it: detach it, or back the VM up another way")
        }
        let type = node.attribute(forName: "type")?.stringValue ?? "file"
        let source = node.elements(forName: "source").first
        let driverType = node.elements(forName: "driver").first?.attribute(forName: "type")?.stringValue ?? "raw"
        guard let format = DomainDisk.Format(rawValue: driverType) else {
            throw Problem(
                description: "\(vm): disk \(target) has format '\(driverType)'; backup_vm handles raw and qcow2")
        }
        let kind: DomainDisk.Kind
        let path: String?
        switch type {
        case "file":
            (kind, path) = (.file, source?.attribute(forName: "file")?.stringValue)
        case "block":
            (kind, path) = (.block, source?.attribute(forName: "dev")?.stringValue)
        default:
            throw Problem(
                description: "\(vm): disk \(target) is of type '\(type)'; backup_vm handles file and block disks")
        }
        guard let path, isSafePath(path) else {
            throw Problem(
                description: "\(vm): disk \(target) has no source path, or one with '..', control characters or"
                    + " shell metacharacters (\(shellMetacharacters)); rename the image or volume")
        }
        if let backing = node.elements(forName: "backingStore").first, !backing.elements(forName: "source").isEmpty {
            throw backingChain(vm: vm, target: target, path: path, backing: backing.xmlString)
        }
        return DomainDisk(target: target, kind: kind, format: format, source: path)
    }

    /// A qcow2 overlay: copying the file alone would give a backup that looks complete and is not.
    public static func backingChain(vm: String, target: String, path: String, backing: String) -> Problem {
        Problem(
            description: "\(vm): disk \(target) (\(path)) is an overlay on a backing chain (\(backing)); backup_vm"
                + " copies whole images only and will not store the overlay alone: flatten it first (virsh blockpull"
                + " \(vm) \(target) --wait, or qemu-img convert)")
    }

    /// Parses domain XML from a hypervisor or a manifest: hostile until checked. libvirt never writes a
    /// document type declaration, and one is how an external entity (`<!ENTITY k SYSTEM "file:///...">`)
    /// would be expanded by the parser: read a file on this server into the manifest and send it back
    /// to a hypervisor at restore. Any DOCTYPE or ENTITY is refused, and external entities are never
    /// loaded in any case.
    static func parse(_ xml: String, what: String) throws(Problem) -> XMLDocument {
        try checkSafe(xml, what: what)
        do {
            return try XMLDocument(xmlString: xml, options: [.nodeLoadExternalEntitiesNever])
        } catch {
            throw Problem(description: "\(what) does not parse: \(error)")
        }
    }

    /// Refuses XML with a document type declaration or entity declarations.
    public static func checkSafe(_ xml: String, what: String) throws(Problem) {
        let upper = xml.uppercased()
        if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
            throw Problem(
                description: "\(what) declares a DOCTYPE or ENTITY, which libvirt never writes; refusing it (it could"
                    + " make the parser read files on this server)")
        }
    }

    /// Characters a disk path may not contain. Every path is quoted in remote scripts; this is the
    /// second fence, so that a quoting mistake can never run a command or widen a glob.
    static let shellMetacharacters = "$`\\\"';|&<>*?[!"

    static func isSafePath(_ path: String) -> Bool {
        path.hasPrefix("/") && !path.split(separator: "/").contains("..")
            && !path.unicodeScalars.contains {
                $0.value < 32 || $0.value == 127 || shellMetacharacters.unicodeScalars.contains($0)
            }
    }

    /// The elements an XPath query finds. A query that fails is an error, never "none found": what
    /// decides what a restore writes or drops cannot be read as absent.
    static func elements(_ node: XMLNode, _ xpath: String) throws(Problem) -> [XMLElement] {
        do {
            return try node.nodes(forXPath: xpath).compactMap { $0 as? XMLElement }
        } catch {
            throw Problem(description: "cannot query the domain XML for \(xpath): \(error)")
        }
    }

    /// The root <domain> of stored domain XML.
    static func storedDomain(_ xml: String) throws(Problem) -> (XMLDocument, XMLElement) {
        let doc = try parse(xml, what: "stored domain XML")
        guard let root = doc.rootElement(), root.name == "domain" else {
            throw Problem(description: "stored domain XML has no <domain>")
        }
        return (doc, root)
    }
}
