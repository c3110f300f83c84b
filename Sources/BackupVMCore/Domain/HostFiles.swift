import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The files and sockets on the hypervisor that a domain's character devices (serial ports,
/// consoles, parallel ports, channels) create or write, and their logs. A copy (`restore --as`) must
/// have its own, in the same directories: only the file's own name carries the VM's name that is
/// renamed (CopyName), never a directory. Those directories must exist on the host the domain goes
/// to, or it cannot start.
enum HostFiles {
    static let devices = "devices/serial | devices/console | devices/parallel | devices/channel"

    /// A copy's files: each renamed in its directory; a channel's socket (the guest agent's) left
    /// to libvirt, which makes one of the copy's own (qemu would otherwise take the original's path
    /// over, and the original's agent would stop answering).
    static func rename(_ root: XMLElement, from old: String, to new: String) throws(DomainXML.Problem) {
        for device in try DomainXML.elements(root, devices) {
            if device.name == "channel", device.attribute(forName: "type")?.stringValue == "unix" {
                for source in device.elements(forName: "source")
                where source.attribute(forName: "mode")?.stringValue ?? "bind" == "bind" {
                    source.removeAttribute(forName: "path")
                }
            }
            for attribute in try written(device) {
                guard let path = attribute.stringValue else { continue }
                let file = (path as NSString).lastPathComponent
                attribute.stringValue =
                    (path as NSString).deletingLastPathComponent + "/" + CopyName.renamed(file, from: old, to: new)
            }
        }
    }

    /// The directories of every file or socket the domain's devices write, sorted, each once.
    static func directories(_ root: XMLElement) throws(DomainXML.Problem) -> [String] {
        var directories: Set<String> = []
        for device in try DomainXML.elements(root, devices) {
            for attribute in try written(device) {
                if let path = attribute.stringValue { directories.insert((path as NSString).deletingLastPathComponent) }
            }
        }
        return directories.sorted()
    }

    /// The attributes naming what `device` writes on the host: its source's path when it is a file,
    /// a pipe or a socket it listens on (a socket it connects to is somebody else's), and its log.
    private static func written(_ device: XMLElement) throws(DomainXML.Problem) -> [XMLNode] {
        let type = device.attribute(forName: "type")?.stringValue ?? "pty"
        var found: [XMLNode] = []
        for source in device.elements(forName: "source") {
            let mode = source.attribute(forName: "mode")?.stringValue
            guard type == "file" || type == "pipe" || (type == "unix" && mode == "bind"),
                let path = source.attribute(forName: "path")
            else { continue }
            found.append(path)
        }
        found += device.elements(forName: "log").compactMap { $0.attribute(forName: "file") }
        for node in found {
            let path = node.stringValue ?? ""
            guard path.hasPrefix("/"), !path.hasSuffix("/"), !path.split(separator: "/").contains("..") else {
                throw DomainXML.Problem(
                    description: "stored domain XML: the \(device.name ?? "device") path '\(path)' is not an absolute"
                        + " file path without '..'")
            }
        }
        return found
    }
}

extension DomainXML {
    /// The directories the domain's consoles, serial and parallel ports, channels and their logs write
    /// into (HostFiles): a restore checks that they exist on the target host before it writes anything.
    public static func directoriesWrittenTo(_ xml: String) throws(Problem) -> [String] {
        try HostFiles.directories(try storedDomain(xml).1)
    }
}
