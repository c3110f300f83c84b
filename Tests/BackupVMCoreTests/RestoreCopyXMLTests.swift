import Foundation
import Testing

@testable import BackupVMCore

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// Issue #19, items 5 and 6: the domain XML of a restored VM (`restore`, `restore --as NEW`). A copy
/// never points at anything of the original's that was not restored for it: a disk that cannot be
/// rewritten is refused, not left as it was; and only what is the VM's own in a console's path (the
/// file name) is renamed, never a directory.
@Suite("restore: the domain XML of a restored VM or copy", .tags(.unit))
struct RestoreCopyXMLTests {
    func xml(disks: String, devices: String = "") -> String {
        "<domain type='kvm'><name>web1</name><memory unit='MiB'>256</memory><devices>\(disks)\(devices)</devices>"
            + "</domain>"
    }

    let fileDisk = """
        <disk type='file' device='disk'><driver name='qemu' type='raw'/>
        <source file='/srv/web1/web1-vda.raw'/><target dev='vda' bus='virtio'/></disk>
        """

    func paths(_ xml: String, _ xpath: String, _ attribute: String) throws -> [String] {
        try XMLDocument(xmlString: xml).nodes(forXPath: xpath).compactMap {
            ($0 as? XMLElement)?.attribute(forName: attribute)?.stringValue
        }
    }

    @Test(
        "#5: a disk the copy has no new path for (neither restored nor excluded) is refused, not left pointing at the original's"
    )
    func diskWithoutNewPathIsRefused() throws {
        let second = """
            <disk type='file' device='disk'><driver name='qemu' type='raw'/>
            <source file='/srv/web1/web1-vdb.raw'/><target dev='vdb' bus='virtio'/></disk>
            """
        let stored = xml(disks: fileDisk + second)
        #expect {
            _ = try DomainXML.renamed(
                stored, from: "web1", to: "web2", diskSources: ["vda": "/srv/web1/web2-vda.raw"])
        } throws: { error in
            "\(error)".contains("vdb") && "\(error)".contains("/srv/web1/web1-vdb.raw")
        }
        // Excluded, it is dropped; restored, it gets its new path: the control.
        let copy = try DomainXML.renamed(
            stored, from: "web1", to: "web2", diskSources: ["vda": "/srv/web1/web2-vda.raw"], droppingDisks: ["vdb"])
        #expect(try paths(copy, "//disk/source", "file") == ["/srv/web1/web2-vda.raw"])
    }

    @Test("#5: a disk whose source is a libvirt volume or network is refused, for a copy and for the VM itself")
    func volumeAndNetworkSourcesAreRefused() throws {
        let sources = [
            "<disk type='volume' device='disk'><source pool='default' volume='web1-vda'/><target dev='vda'/></disk>",
            "<disk type='network' device='disk'><source protocol='rbd' name='pool/web1'/><target dev='vda'/></disk>",
            "<disk type='file' device='disk'><target dev='vda'/></disk>",
        ]
        for disk in sources {
            #expect(throws: DomainXML.Problem.self, "\(disk)") {
                _ = try DomainXML.renamed(
                    xml(disks: disk), from: "web1", to: "web2", diskSources: ["vda": "/srv/web1/web2-vda.raw"])
            }
            #expect(throws: DomainXML.Problem.self, "\(disk)") {
                _ = try DomainXML.withDiskSources(xml(disks: disk), ["vda": "/srv/web1/web1-vda.raw"])
            }
        }
        #expect(throws: DomainXML.Problem.self, "a restored disk the XML does not have") {
            _ = try DomainXML.withDiskSources(xml(disks: fileDisk), ["vdb": "/srv/web1/web1-vdb.raw"])
        }
    }

    @Test("#5: the copy's disk loses its backing chain; a floppy's writable medium of the original is emptied")
    func backingStoreAndFloppy() throws {
        let disk = """
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/web1/web1-vda.qcow2'/>
            <backingStore type='file'><source file='/srv/base.qcow2'/></backingStore><target dev='vda'/></disk>
            <disk type='file' device='floppy'><source file='/srv/web1/web1-boot.img'/><target dev='fda'/></disk>
            <disk type='file' device='cdrom'><source file='/srv/iso/install.iso'/><target dev='sda'/><readonly/></disk>
            """
        let copy = try DomainXML.renamed(
            xml(disks: disk), from: "web1", to: "web2", diskSources: ["vda": "/srv/web1/web2-vda.qcow2"])
        #expect(!copy.contains("base.qcow2") && !copy.contains("web1-boot.img"), "\(copy)")
        #expect(copy.contains("install.iso"), "a CD's medium is read-only and stays")
    }

    /// Found in the sweep of issue #19 (item 13's class, for `restore --as`): a copy kept the
    /// original's passed-through devices, shared directories and memory, and nvdimm/pmem backed by the
    /// original's file: running beside it, it wrote into the original's data.
    @Test("a copy gets none of the original's host devices, shared directories, shared or file-backed memory")
    func devicesOfTheOriginalsOwnAreLeftOut() throws {
        let devices = """
            <hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address bus='0' target='0' unit='1'/></source></hostdev>
            <redirdev bus='usb' type='spicevmc'/>
            <filesystem type='mount' accessmode='passthrough'><source dir='/srv/web1/data'/><target dir='data'/></filesystem>
            <shmem name='web1-shm'><model type='ivshmem-plain'/></shmem>
            <memory model='nvdimm'><source><path>/srv/web1/nvdimm.img</path></source><target><size unit='MiB'>64</size></target></memory>
            <memory model='dimm'><target><size unit='MiB'>64</size></target></memory>
            <input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>
            <input type='tablet' bus='usb'/>
            """
        let stored = xml(disks: fileDisk, devices: devices)
        let copy = try DomainXML.renamed(
            stored, from: "web1", to: "web2", diskSources: ["vda": "/srv/web1/web2-vda.raw"])
        for gone in [
            "hostdev", "redirdev", "filesystem", "shmem", "memory[@model='nvdimm']", "input[@type='passthrough']",
        ] {
            #expect(try XMLDocument(xmlString: copy).nodes(forXPath: "//devices/" + gone).isEmpty, "\(gone): \(copy)")
        }
        #expect(try XMLDocument(xmlString: copy).nodes(forXPath: "//devices/memory[@model='dimm']").count == 1)
        #expect(try XMLDocument(xmlString: copy).nodes(forXPath: "//devices/input[@type='tablet']").count == 1)
        #expect(try DomainXML.sharedDevices(of: stored).count == 6)
        // The VM itself keeps them: they are its own.
        let itself = try DomainXML.withDiskSources(stored, ["vda": "/srv/web1/web1-vda.raw"])
        #expect(try XMLDocument(xmlString: itself).nodes(forXPath: "//devices/hostdev").count == 1)
    }

    @Test("#5: a copy's agent channel lets libvirt choose its socket (qemu would take over the original's)")
    func channelSocketOfTheOriginalIsDropped() throws {
        let channel = """
            <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web1.org.qemu.guest_agent.0'/>
            <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
            """
        let copy = try DomainXML.renamed(
            xml(disks: fileDisk, devices: channel), from: "web1", to: "web2",
            diskSources: ["vda": "/srv/web1/web2-vda.raw"])
        #expect(try paths(copy, "//channel/source", "path").isEmpty, "\(copy)")
        #expect(try paths(copy, "//channel/target", "name") == ["org.qemu.guest_agent.0"])
    }

    @Test("#6: only the console file's own name is renamed, never a directory; a VM named like a directory")
    func consoleFileRenamedNotItsDirectory() throws {
        let devices = """
            <serial type='file'><source path='/srv/web1/console-web1.log' append='on'/><target port='0'/>
            <log file='/var/log/web1/web1-serial.log'/></serial>
            <console type='file'><source path='/srv/web1/console-web1.log'/><target type='serial' port='0'/></console>
            <serial type='file'><source path='/srv/web1/ttyS1.log'/><target port='1'/></serial>
            """
        let copy = try DomainXML.renamed(
            xml(disks: fileDisk, devices: devices), from: "web1", to: "web2",
            diskSources: ["vda": "/srv/web1/web2-vda.raw"])
        #expect(
            try paths(copy, "//serial/source", "path") == ["/srv/web1/console-web2.log", "/srv/web1/web2-ttyS1.log"],
            "a file without the name gets it in front (it must not be the original's file)")
        #expect(try paths(copy, "//console/source", "path") == ["/srv/web1/console-web2.log"])
        #expect(try paths(copy, "//serial/log", "file") == ["/var/log/web1/web2-serial.log"])

        // A VM named `lib`: /var/lib stays /var/lib.
        let lib = xml(
            disks: fileDisk.replacingOccurrences(of: "web1", with: "lib"),
            devices: "<serial type='file'><source path='/var/lib/libvirt/qemu/lib-console.log'/></serial>"
        ).replacingOccurrences(of: "<name>web1", with: "<name>lib")
        let libCopy = try DomainXML.renamed(
            lib, from: "lib", to: "lab", diskSources: ["vda": "/srv/lib/lab-vda.raw"])
        #expect(try paths(libCopy, "//serial/source", "path") == ["/var/lib/libvirt/qemu/lab-console.log"])
    }

    @Test("#6: a disk file of the copy renames the VM's name where it stands as a word, not inside other words")
    func diskFileNameRenamedAsAWord() throws {
        let file = RestoreDestination.file(path: "/srv/a/data-a.raw")
        #expect(try file.renamed(from: "a", to: "b", disk: "vda", host: "kvm1") == .file(path: "/srv/a/data-b.raw"))
        let lv = RestoreDestination.volume(VolumeName(vg: "vg0", lv: "vd-vda"), path: "/dev/vg0/vd-vda")
        #expect(
            try lv.renamed(from: "vd", to: "copy", disk: "vda", host: "kvm1")
                == .volume(VolumeName(vg: "vg0", lv: "copy-vda"), path: "/dev/vg0/copy-vda"))
        let inside = RestoreDestination.file(path: "/srv/web/webdisk.raw")
        #expect(
            try inside.renamed(from: "web", to: "db", disk: "vda", host: "kvm1")
                == .file(path: "/srv/web/db-webdisk.raw"), "no word of its own: the new name in front")
    }

    @Test("#6: the directories the copy's consoles write into are named, for the check on the target host")
    func directoriesTheDomainWritesInto() throws {
        let devices = """
            <serial type='file'><source path='/srv/web1/console-web1.log'/><log file='/var/log/vm/web1.log'/></serial>
            <serial type='pty'><target port='1'/></serial>
            <channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
            """
        let dirs = try DomainXML.directoriesWrittenTo(xml(disks: fileDisk, devices: devices))
        #expect(dirs == ["/srv/web1", "/var/log/vm"])
    }
}
