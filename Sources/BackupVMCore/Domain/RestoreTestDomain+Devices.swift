import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The copy's <devices>, each rebuilt from what the allow-list reads of the original's.
extension RestoreTestDomain {
    func devices(
        diskFiles: [String: (path: String, format: DomainDisk.Format)], console: String
    ) throws(DomainXML.Problem) -> XMLElement {
        guard let from = original.elements(forName: "devices").first else {
            throw DomainXML.Problem(description: "the domain XML has no <devices>")
        }
        let devices = Self.element("devices")
        var placed: Set<String> = []
        var agent = false
        var rng = false
        for child in Self.children(from) {
            let type = child.attribute(forName: "type")?.stringValue ?? ""
            let model = child.attribute(forName: "model")?.stringValue ?? ""
            switch child.name ?? "" {
            case "disk":
                guard let (disk, target) = try Self.disk(child, diskFiles) else { continue }
                devices.addChild(disk)
                if let target { placed.insert(target) }
            case "controller" where Self.controllerTypes.contains(type): devices.addChild(Self.controller(child))
            case "input"
            where Self.inputTypes.contains(type)
                && Self.inputBuses.contains(child.attribute(forName: "bus")?.stringValue ?? "ps2"):
                devices.addChild(Self.withAddress(Self.plain(child, ["type", "bus"]), of: child))
            case "video": if let video = Self.video(child) { devices.addChild(video) }
            case "memballoon" where Self.virtioModels.contains(model) || model == "none":
                devices.addChild(Self.withAddress(Self.plain(child, ["model", "autodeflate"]), of: child))
            case "channel" where !agent && Self.isAgentChannel(child):
                agent = true
                devices.addChild(Self.agentChannel(child))
            case "rng" where !rng && Self.virtioModels.contains(model):
                rng = true
                devices.addChild(Self.urandom(child))
            default: continue
            }
        }
        if let missing = Set(diskFiles.keys).subtracting(placed).sorted().first {
            throw DomainXML.Problem(description: "the domain XML has no disk \(missing), which the backup holds")
        }
        devices.addChild(Self.fileSerial(console))
        return devices
    }

    /// A restored disk as the test's file (nil: a disk that was not restored, dropped); a CD-ROM or
    /// floppy drive stays without its medium. Returns the disk and its target if it is a restored one.
    static func disk(
        _ from: XMLElement, _ files: [String: (path: String, format: DomainDisk.Format)]
    ) throws(DomainXML.Problem) -> (XMLElement, String?)? {
        let device = from.attribute(forName: "device")?.stringValue ?? "disk"
        // A disk without a usable target is none of the restored ones (devices() checks that each
        // of those is placed): it is dropped like every disk that was not restored.
        guard let target = from.elements(forName: "target").first,
            let dev = target.attribute(forName: "dev")?.stringValue, SafeName.isValidVMName(dev)
        else { return nil }
        let copy = element("disk", ["type": "file", "device": device])
        let newTarget = plain(target, ["dev"])
        if let bus = target.attribute(forName: "bus")?.stringValue, diskBuses.contains(bus) {
            newTarget.addAttribute(attribute("bus", bus))
        }
        switch device {
        case "cdrom", "floppy":
            copy.addChild(newTarget)
            if !from.elements(forName: "readonly").isEmpty { copy.addChild(element("readonly")) }
            return (withAddress(copy, of: from), nil)
        case "disk":
            guard let file = files[dev] else { return nil }
            copy.addChild(element("driver", ["name": "qemu", "type": file.format.rawValue]))
            copy.addChild(element("source", ["file": file.path]))
            copy.addChild(newTarget)
            for name in ["serial", "wwn"] {
                if let value = from.elements(forName: name).first?.stringValue {
                    copy.addChild(element(name, text: value))
                }
            }
            if let boot = from.elements(forName: "boot").first { copy.addChild(plain(boot, ["order"])) }
            if !from.elements(forName: "readonly").isEmpty { copy.addChild(element("readonly")) }
            return (withAddress(copy, of: from), dev)
        default:
            return nil
        }
    }

    /// A controller without driver tuning (queues, iothreads); a USB companion keeps its master.
    static func controller(_ from: XMLElement) -> XMLElement {
        let copy = plain(from, ["type", "index", "model", "ports", "vectors"])
        for child in children(from) {
            switch child.name ?? "" {
            case "model": copy.addChild(plain(child, ["name"]))
            case "target": copy.addChild(plain(child, ["chassisNr", "chassis", "port", "busNr", "index", "hotplug"]))
            case "master": copy.addChild(plain(child, ["startport"]))
            default: continue
            }
        }
        return withAddress(copy, of: from)
    }

    static func video(_ from: XMLElement) -> XMLElement? {
        guard let model = from.elements(forName: "model").first,
            videoModels.contains(model.attribute(forName: "type")?.stringValue ?? "")
        else { return nil }
        let video = element("video")
        video.addChild(plain(model, ["type", "vram", "vgamem", "ram", "heads", "primary"]))
        return withAddress(video, of: from)
    }

    static func isAgentChannel(_ channel: XMLElement) -> Bool {
        channel.attribute(forName: "type")?.stringValue == "unix"
            && channel.elements(forName: "target").contains {
                $0.attribute(forName: "type")?.stringValue == "virtio"
                    && $0.attribute(forName: "name")?.stringValue == agentChannel
            }
    }

    /// The guest agent's channel; libvirt picks the socket (the original's path would clash).
    static func agentChannel(_ from: XMLElement) -> XMLElement {
        let channel = element("channel", ["type": "unix"])
        channel.addChild(element("target", ["type": "virtio", "name": agentChannel]))
        return withAddress(channel, of: from)
    }

    /// A virtio RNG, whatever fed the original's: /dev/urandom of the test's host.
    static func urandom(_ from: XMLElement) -> XMLElement {
        let rng = element("rng", ["model": from.attribute(forName: "model")?.stringValue ?? "virtio"])
        rng.addChild(element("backend", ["model": "random"], text: "/dev/urandom"))
        return withAddress(rng, of: from)
    }

    /// One serial port into a file: where the test reads its sign of life.
    static func fileSerial(_ path: String) -> XMLElement {
        let serial = element("serial", ["type": "file"])
        serial.addChild(element("source", ["path": path]))
        serial.addChild(element("target", ["port": "0"]))
        return serial
    }
}

/// Building blocks: new elements, and copies of an original's that keep only the attributes asked for.
extension RestoreTestDomain {
    static func element(_ name: String, _ attributes: KeyValuePairs<String, String> = [:], text: String? = nil)
        -> XMLElement
    {
        let element = XMLElement(name: name)
        for (key, value) in attributes { element.addAttribute(attribute(key, value)) }
        if let text { element.stringValue = text }
        return element
    }

    static func attribute(_ name: String, _ value: String) -> XMLNode {
        // swift-corelibs-foundation returns XMLNode for an attribute; the cast cannot fail.
        XMLNode.attribute(withName: name, stringValue: value) as! XMLNode
    }

    /// A new element of `from`'s name with only the listed attributes of it (and its text, if asked).
    static func plain(_ from: XMLElement, _ attributes: [String], text: Bool = false) -> XMLElement {
        let copy = XMLElement(name: from.name ?? "unnamed")
        for name in attributes {
            if let value = from.attribute(forName: name)?.stringValue { copy.addAttribute(attribute(name, value)) }
        }
        if text, let value = from.stringValue { copy.stringValue = value }
        return copy
    }

    /// `to` with `from`'s <address> (the guest's bus address: attributes only), if it has one.
    static func withAddress(_ to: XMLElement, of from: XMLElement) -> XMLElement {
        if let address = from.elements(forName: "address").first {
            let copy = XMLElement(name: "address")
            for a in address.attributes ?? [] {
                if let name = a.name, let value = a.stringValue { copy.addAttribute(attribute(name, value)) }
            }
            to.addChild(copy)
        }
        return to
    }

    static func children(_ element: XMLElement) -> [XMLElement] {
        (element.children ?? []).compactMap { $0 as? XMLElement }
    }

    static func number(_ text: String?) -> Int? {
        guard let text, let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0, n <= 4096 else { return nil }
        return n
    }
}
