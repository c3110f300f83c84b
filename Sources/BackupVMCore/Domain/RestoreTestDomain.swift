import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The restore test's throw-away copy, made as a new document from an allow-list: what the stored
/// XML says is read only where this type asks for it (and checked there), everything else is left
/// behind, whatever it is. What a copy keeps, and why it is safe to keep:
/// - name (the test's), memory and currentMemory (in KiB), the vCPU count: numbers;
/// - os: type, the firmware (a read-only ROM or pflash image; a writable one is refused), a new UEFI
///   variable store from the original's template, the kernel, initrd and command line of a direct
///   kernel boot (read-only inputs that qemu opens, never writes; the lab's guests boot so), boot order;
/// - features (known ones, whole; not `tcg`), clock: guest-visible switches and timers, no host resource;
/// - cpu: mode, model, vendor, topology, features (no NUMA cells, no cache placement);
/// - on_poweroff/on_reboot/on_crash: destroy, restart, preserve, rename-restart;
/// - devices: the restored disks as files of the test's (format, target, serial number, boot
///   order, address), CD-ROM and floppy drives without a medium, controllers (no driver tuning),
///   mouse/keyboard/tablet, a video model, the memory balloon, the guest agent's channel (libvirt
///   picks the socket), a virtio RNG fed from /dev/urandom, and one serial port into the test's file.
/// Dropped with the rest: emulator, qemu:commandline, network interfaces, host devices, shared
/// directories and memory, nvdimm/pmem, parallel ports, RNG backends other than /dev/urandom,
/// seclabels, sysinfo, memoryBacking (hugepages, locked, file-backed), pinning (cputune, numatune,
/// vcpu cpuset), memtune, resource partitions, graphics, audio, TPM, watchdog, vsock, metadata.
struct RestoreTestDomain {
    let original: XMLElement

    static let domainTypes: Set<String> = ["kvm", "qemu"]
    /// Guest-visible platform switches, copied whole; not `tcg` (its translation cache size is host
    /// memory the MemAvailable check does not count) nor anything unknown.
    static let features: Set<String> = [
        "acpi", "apic", "pae", "hap", "viridian", "privnet", "hyperv", "kvm", "pvspinlock", "gic", "ioapic", "hpt",
        "vmcoreinfo", "smm", "htm", "nested-hv", "msrs", "ccf-assist", "cfpc", "sbbc", "ibs", "vmport", "pmu",
        "async-teardown",
    ]
    static let lifecycle = ["on_poweroff", "on_reboot", "on_crash"]
    static let lifecycleActions: Set<String> = ["destroy", "restart", "preserve", "rename-restart"]
    static let diskBuses: Set<String> = ["virtio", "sata", "scsi", "ide", "usb", "fdc"]
    static let controllerTypes: Set<String> = ["pci", "usb", "scsi", "sata", "ide", "virtio-serial", "fdc"]
    static let inputTypes: Set<String> = ["mouse", "keyboard", "tablet"]
    static let inputBuses: Set<String> = ["ps2", "usb", "virtio"]
    static let videoModels: Set<String> = ["vga", "cirrus", "virtio", "qxl", "bochs", "ramfb", "none"]
    static let virtioModels: Set<String> = ["virtio", "virtio-transitional", "virtio-non-transitional"]
    static let agentChannel = "org.qemu.guest_agent.0"

    /// The copy's <domain>.
    func build(
        name: String, diskFiles: [String: (path: String, format: DomainDisk.Format)], console: String
    ) throws(DomainXML.Problem) -> XMLElement {
        let type = original.attribute(forName: "type")?.stringValue ?? ""
        guard Self.domainTypes.contains(type) else {
            throw DomainXML.Problem(
                description: "the domain is of type '\(type)'; a restore test copies qemu and kvm domains only")
        }
        let root = Self.element("domain", ["type": type])
        root.addChild(Self.element("name", text: name))
        try addSizes(to: root)
        root.addChild(try os())
        if let from = original.elements(forName: "features").first {
            let features = Self.element("features")
            for feature in Self.children(from) where Self.features.contains(feature.name ?? "") {
                if let copy = feature.copy() as? XMLElement { features.addChild(copy) }
            }
            root.addChild(features)
        }
        if let clock = original.elements(forName: "clock").first, let copy = clock.copy() as? XMLElement {
            root.addChild(copy)
        }
        if let cpu = original.elements(forName: "cpu").first { root.addChild(self.cpu(cpu)) }
        for event in Self.lifecycle {
            if let action = original.elements(forName: event).first?.stringValue,
                Self.lifecycleActions.contains(action)
            {
                root.addChild(Self.element(event, text: action))
            }
        }
        root.addChild(try devices(diskFiles: diskFiles, console: console))
        return root
    }

    /// Memory in KiB (rounded up) and the vCPU count, without placement or pinning.
    private func addSizes(to root: XMLElement) throws(DomainXML.Problem) {
        let memory = try DomainXML.memoryBytes(of: original)
        root.addChild(Self.element("memory", ["unit": "KiB"], text: "\(Self.kiB(memory))"))
        if let current = original.elements(forName: "currentMemory").first.flatMap(DomainMemory.bytes), current > 0 {
            root.addChild(Self.element("currentMemory", ["unit": "KiB"], text: "\(Self.kiB(current))"))
        }
        guard let vcpu = original.elements(forName: "vcpu").first else { return }
        guard let count = Self.number(vcpu.stringValue) else {
            throw DomainXML.Problem(description: "the domain's <vcpu> is not a number: \(vcpu.stringValue ?? "")")
        }
        let copy = Self.element("vcpu", text: "\(count)")
        if let current = Self.number(vcpu.attribute(forName: "current")?.stringValue), current <= count {
            copy.addAttribute(Self.attribute("current", "\(current)"))
        }
        root.addChild(copy)
    }

    /// Bytes in KiB, rounded up.
    static func kiB(_ bytes: Int64) -> Int64 { bytes / 1024 + (bytes % 1024 == 0 ? 0 : 1) }

    private func os() throws(DomainXML.Problem) -> XMLElement {
        guard let from = original.elements(forName: "os").first else {
            throw DomainXML.Problem(description: "the domain XML has no <os>")
        }
        let os = Self.plain(from, ["firmware"])
        for child in Self.children(from) {
            switch child.name ?? "" {
            case "type", "kernel", "initrd", "cmdline": os.addChild(Self.plain(child, ["arch", "machine"], text: true))
            case "loader": os.addChild(try Self.loader(child))
            case "nvram":
                // A fresh store from the template (libvirt makes it, `undefine --nvram` removes it);
                // the original's own path, or a network store, never.
                if child.attribute(forName: "template") != nil { os.addChild(Self.plain(child, ["template"])) }
            case "boot": os.addChild(Self.plain(child, ["dev"]))
            case "bootmenu": os.addChild(Self.plain(child, ["enable", "timeout"]))
            case "bios": os.addChild(Self.plain(child, ["useserial", "rebootTimeout"]))
            case "firmware":
                let firmware = Self.plain(child, [])
                for feature in child.elements(forName: "feature") {
                    firmware.addChild(Self.plain(feature, ["enabled", "name"]))
                }
                os.addChild(firmware)
            default: continue
            }
        }
        return os
    }

    /// The firmware image: read-only (a ROM, or pflash marked readonly) or refused, since a copy
    /// would write into the original's file.
    private static func loader(_ from: XMLElement) throws(DomainXML.Problem) -> XMLElement {
        let type = from.attribute(forName: "type")?.stringValue ?? "rom"
        let readonly = from.attribute(forName: "readonly")?.stringValue == "yes"
        guard type == "rom" || readonly else {
            throw DomainXML.Problem(
                description: "the domain's firmware \(from.stringValue ?? "") is a writable pflash image (no"
                    + " readonly='yes'): a copy would write into the original's; a restore test makes no such copy")
        }
        return plain(from, ["readonly", "type", "secure", "format"], text: true)
    }

    private func cpu(_ from: XMLElement) -> XMLElement {
        let cpu = Self.plain(from, ["mode", "match", "check", "migratable"])
        for child in Self.children(from) {
            switch child.name ?? "" {
            case "model": cpu.addChild(Self.plain(child, ["fallback", "vendor_id"], text: true))
            case "vendor": cpu.addChild(Self.plain(child, [], text: true))
            case "topology": cpu.addChild(Self.plain(child, ["sockets", "dies", "clusters", "cores", "threads"]))
            case "feature": cpu.addChild(Self.plain(child, ["policy", "name"]))
            default: continue
            }
        }
        return cpu
    }
}
