import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The domain XML of `backup_vm restore-test`'s throw-away copy.
extension DomainXML {
    /// The XML of a restore test's throw-away copy: a new name, no UUID, no network interface, no host
    /// device, no CD-ROM or floppy medium, no UEFI variable store of the original's, every restored
    /// disk a file (`diskFiles`: target -> path and format) and every other disk dropped, one serial
    /// console into `console` (where the test looks for its sign of life), and the agent channel's
    /// socket left to libvirt (the original's path would clash). No shared host directory, shared
    /// memory, TPM, smartcard, passthrough input or graphics either: the copy must not reach the
    /// original's data or clash with its ports. `marker` (a namespace URI) in <metadata> says the
    /// domain is a test's copy, of `backup`.
    public static func forRestoreTest(
        _ xml: String, name: String, diskFiles: [String: (path: String, format: DomainDisk.Format)], console: String,
        marker: String, backup: String
    ) throws(Problem) -> String {
        let doc = try parse(xml, what: "stored domain XML")
        guard let root = doc.rootElement() else { throw Problem(description: "stored domain XML is empty") }
        root.elements(forName: "name").first?.stringValue = name
        for uuid in root.elements(forName: "uuid") { uuid.detach() }
        let drop = [
            "devices/interface", "devices/hostdev", "devices/redirdev", "devices/serial", "devices/console",
            "os/nvram", "sysinfo/system/entry[@name='uuid']", "devices/filesystem", "devices/shmem", "devices/tpm",
            "devices/smartcard", "devices/graphics", "devices/input[@type='passthrough']",
            "devices/input[@type='evdev']", "metadata",
            // Without graphics libvirt refuses SPICE channels and audio (virt-manager's defaults).
            "devices/channel[@type='spicevmc']", "devices/channel[@type='spiceport']", "devices/audio",
            "devices/sound",
        ].joined(separator: " | ")
        for case let node as XMLElement in (try? root.nodes(forXPath: drop)) ?? [] { node.detach() }
        for case let source as XMLElement in (try? root.nodes(forXPath: "devices/channel/source")) ?? [] {
            source.detach()
        }
        fileDisks(root, diskFiles)
        // A fixed vsock CID would clash with the original's on the same host.
        for case let cid as XMLElement in (try? root.nodes(forXPath: "devices/vsock/cid")) ?? [] {
            cid.removeAttribute(forName: "address")
            cid.attribute(forName: "auto")?.stringValue = "yes"
        }
        guard let devices = root.elements(forName: "devices").first else {
            throw Problem(description: "stored domain XML has no <devices>")
        }
        devices.addChild(fileSerial(console))
        let metadata = XMLElement(name: "metadata")
        let mark = XMLElement(name: "bvm:restore-test", uri: marker)
        mark.addNamespace(XMLNode.namespace(withName: "bvm", stringValue: marker) as! XMLNode)
        mark.addAttribute(XMLNode.attribute(withName: "backup", stringValue: backup) as! XMLNode)
        metadata.addChild(mark)
        root.addChild(metadata)
        return doc.xmlString(options: [.nodePrettyPrint])
    }

    /// Every restored disk a file of its format; the others dropped; removable media emptied.
    private static func fileDisks(_ root: XMLElement, _ diskFiles: [String: (path: String, format: DomainDisk.Format)])
    {
        for case let disk as XMLElement in (try? root.nodes(forXPath: "devices/disk")) ?? [] {
            let device = disk.attribute(forName: "device")?.stringValue ?? "disk"
            if device == "cdrom" || device == "floppy" {
                for source in disk.elements(forName: "source") { source.detach() }
                continue
            }
            guard let target = disk.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue,
                let file = diskFiles[target]
            else {
                disk.detach()
                continue
            }
            disk.attribute(forName: "type")?.stringValue = "file"
            for node in disk.elements(forName: "source") + disk.elements(forName: "backingStore") { node.detach() }
            let source = XMLElement(name: "source")
            source.addAttribute(XMLNode.attribute(withName: "file", stringValue: file.path) as! XMLNode)
            disk.addChild(source)
            if let driver = disk.elements(forName: "driver").first {
                driver.attribute(forName: "type")?.stringValue = file.format.rawValue
                // io='native' needs cache='none', which a file in WorkPath's file system may not allow.
                driver.removeAttribute(forName: "io")
                driver.removeAttribute(forName: "cache")
            }
        }
    }

    /// One serial port into a file: where the test reads its sign of life.
    private static func fileSerial(_ path: String) -> XMLElement {
        let serial = XMLElement(name: "serial")
        serial.addAttribute(XMLNode.attribute(withName: "type", stringValue: "file") as! XMLNode)
        let source = XMLElement(name: "source")
        source.addAttribute(XMLNode.attribute(withName: "path", stringValue: path) as! XMLNode)
        let target = XMLElement(name: "target")
        target.addAttribute(XMLNode.attribute(withName: "port", stringValue: "0") as! XMLNode)
        serial.addChild(source)
        serial.addChild(target)
        return serial
    }
}
