import Foundation
import Testing

@testable import BackupVMCore

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The throw-away copy a restore test boots: nothing of it may reach the original's network, devices,
/// disks or files.
@Suite("restore test: the copy's domain XML", .tags(.unit))
struct RestoreTestXMLTests {
    let original = """
        <domain type='kvm'>
          <name>web01</name>
          <uuid>4b1c9a3e-0000-4000-8000-000000000001</uuid>
          <memory unit='MiB'>512</memory>
          <metadata><app:info xmlns:app="https://example.org/app">prod</app:info></metadata>
          <sysinfo type='smbios'><system><entry name='uuid'>4b1c9a3e-0000-4000-8000-000000000001</entry>
            <entry name='serial'>S1</entry></system></sysinfo>
          <os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>
          <devices>
            <disk type='block' device='disk'>
              <driver name='qemu' type='raw' cache='none' io='native'/>
              <source dev='/dev/vg0/web01-root'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='/var/lib/libvirt/images/web01-data.qcow2'/>
              <backingStore type='file'><source file='/var/lib/libvirt/images/base.qcow2'/></backingStore>
              <target dev='vdb' bus='virtio'/>
            </disk>
            <disk type='block' device='disk'>
              <source dev='/dev/vg0/web01-scratch'/>
              <target dev='vdc' bus='virtio'/>
            </disk>
            <disk type='file' device='cdrom'>
              <source file='/srv/iso/install.iso'/>
              <target dev='sda' bus='sata'/>
            </disk>
            <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>
            <hostdev mode='subsystem' type='pci'><source><address bus='0x03' slot='0x00'/></source></hostdev>
            <filesystem type='mount'><source dir='/srv/shared'/><target dir='shared'/></filesystem>
            <shmem name='ivshmem0'><size unit='M'>4</size></shmem>
            <tpm model='tpm-crb'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>
            <input type='evdev'><source dev='/dev/input/event1'/></input>
            <input type='tablet' bus='usb'/>
            <graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0'/>
            <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
            <audio id='1' type='spice'/>
            <sound model='ich9'><audio id='1'/></sound>
            <vsock model='virtio'><cid auto='no' address='3'/></vsock>
            <serial type='pty'><target port='0'/></serial>
            <console type='pty'><target type='serial' port='0'/></console>
            <channel type='unix'>
              <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web01.org.qemu.guest_agent.0'/>
              <target type='virtio' name='org.qemu.guest_agent.0'/>
            </channel>
          </devices>
        </domain>
        """

    @Test func theCopyHasItsOwnNameFilesAndConsoleAndNothingOfTheOriginals() throws {
        let dir = "/var/lib/backup_vm/web01/restoretest"
        let xml = try DomainXML.forRestoreTest(
            original, name: "web01-restoretest",
            diskFiles: ["vda": (dir + "/vda.raw", .raw), "vdb": (dir + "/vdb.qcow2", .qcow2)],
            console: dir + "/console'<&>.log", marker: "https://backup-vm.invalid/restore-test",
            backup: "20261127T220000Z")
        let doc = try XMLDocument(xmlString: xml)
        func nodes(_ path: String) throws -> [XMLElement] {
            try doc.nodes(forXPath: path).compactMap { $0 as? XMLElement }
        }
        #expect(try nodes("/domain/name").first?.stringValue == "web01-restoretest")
        #expect(try nodes("/domain/uuid").isEmpty && nodes("/domain/os/nvram").isEmpty)
        #expect(try nodes("//interface").isEmpty, "no network")
        #expect(try nodes("//hostdev").isEmpty, "no host device")
        let disks = try nodes("//disk[@device='disk']")
        #expect(disks.count == 2, "the disk that was not restored is dropped")
        let sources = try nodes("//disk[@device='disk']/source").compactMap {
            $0.attribute(forName: "file")?.stringValue
        }
        #expect(sources == [dir + "/vda.raw", dir + "/vdb.qcow2"])
        #expect(try nodes("//disk[@device='disk']/source[@dev]").isEmpty && nodes("//backingStore").isEmpty)
        #expect(try disks.allSatisfy { $0.attribute(forName: "type")?.stringValue == "file" })
        #expect(
            try nodes("//disk[@device='disk']/driver").map { $0.attribute(forName: "type")?.stringValue } == [
                "raw", "qcow2",
            ])
        #expect(try nodes("//disk[@device='cdrom']/source").isEmpty, "no medium")
        #expect(try nodes("//console").isEmpty)
        let serial = try nodes("//serial")
        #expect(serial.count == 1 && serial[0].attribute(forName: "type")?.stringValue == "file")
        #expect(try nodes("//serial/source").first?.attribute(forName: "path")?.stringValue == dir + "/console'<&>.log")
        #expect(try nodes("//channel/source").isEmpty, "libvirt picks the agent socket")
        #expect(try nodes("//channel/target").count == 1, "the agent channel stays, SPICE's goes")
        #expect(try nodes("//audio").isEmpty && nodes("//sound").isEmpty, "no SPICE audio without graphics")
        #expect(try nodes("//vsock").isEmpty, "no vsock: nothing on the host to talk to (it had a fixed CID)")
        #expect(try nodes("//sysinfo").isEmpty, "no SMBIOS of the original's (libvirt refuses its UUID without <uuid>)")
        #expect(try nodes("//filesystem").isEmpty && nodes("//shmem").isEmpty && nodes("//tpm").isEmpty)
        #expect(try nodes("//graphics").isEmpty, "no port clashing with the original's")
        #expect(try nodes("//input").count == 1, "the tablet stays, the host's input device does not")
        #expect(!xml.contains("https://example.org/app"), "the original's metadata is not carried over")
        #expect(xml.contains("https://backup-vm.invalid/restore-test") && xml.contains("20261127T220000Z"), "\(xml)")
    }
}

/// Issue #19, items 10 and 13: the restore test's copy is built from an allow-list (a new document
/// with only what is known to be safe and needed to boot), so nothing a hypervisor put into the
/// stored XML reaches the copy unless it is on that list; and it keeps neither pinning nor reserved
/// memory of the original's.
@Suite("restore test: the copy is made from an allow-list", .tags(.unit))
struct RestoreTestAllowListTests {
    static let dir = "/var/lib/backup_vm/web01/restoretest"

    /// A domain with everything that must not reach a throw-away copy on another host.
    let hostile = """
        <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>web01</name>
          <title>prod web</title>
          <memory unit='GiB'>4</memory>
          <currentMemory unit='GiB'>2</currentMemory>
          <maxMemory slots='16' unit='GiB'>64</maxMemory>
          <memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages><locked/>
            <source type='file'/><access mode='shared'/></memoryBacking>
          <memtune><hard_limit unit='GiB'>5</hard_limit></memtune>
          <vcpu placement='static' cpuset='2-3' current='2'>4</vcpu>
          <iothreads>1</iothreads>
          <cputune><vcpupin vcpu='0' cpuset='2'/><emulatorpin cpuset='3'/><iothreadpin iothread='1' cpuset='3'/>
          </cputune>
          <numatune><memory mode='strict' nodeset='1'/></numatune>
          <resource><partition>/machine/prod</partition></resource>
          <sysinfo type='fwcfg'><entry name='opt/com.example/secret' file='/etc/shadow'/></sysinfo>
          <os firmware='efi'>
            <type arch='x86_64' machine='q35'>hvm</type>
            <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
            <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram>
            <acpi><table type='slic'>/srv/web01/slic.bin</table></acpi>
            <smbios mode='sysinfo'/>
            <boot dev='hd'/>
          </os>
          <features><acpi/><apic/><smm state='on'/><tcg><tb-cache unit='GiB'>64</tb-cache></tcg></features>
          <cpu mode='host-passthrough' check='none'><topology sockets='1' cores='2' threads='2'/>
            <numa><cell id='0' cpus='0-3' memory='4' unit='GiB' memAccess='shared'/></numa></cpu>
          <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
          <on_poweroff>destroy</on_poweroff>
          <on_reboot>restart</on_reboot>
          <on_crash>coredump-restart</on_crash>
          <devices>
            <emulator>/srv/evil/qemu-wrapper</emulator>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2' cache='none' io='native' iothread='1'/>
              <source file='/srv/web01/vda.qcow2'><seclabel model='dac' relabel='no'/></source>
              <target dev='vda' bus='virtio'/><serial>WEB01-ROOT</serial><boot order='1'/>
              <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
            </disk>
            <disk type='file' device='disk'><source file='/srv/web01/vdb.raw'/><target dev='vdb' bus='virtio'/></disk>
            <controller type='pci' index='0' model='pcie-root'/>
            <controller type='virtio-serial' index='0'/>
            <memory model='nvdimm' access='shared'><source><path>/srv/web01/nvdimm.img</path></source>
              <target><size unit='GiB'>1</size><node>0</node></target></memory>
            <memory model='virtio-pmem' access='shared'><source><path>/srv/web01/pmem.img</path></source>
              <target><size unit='GiB'>1</size></target></memory>
            <parallel type='file'><source path='/srv/web01/lp0'/><target port='0'/></parallel>
            <rng model='virtio'><backend model='egd' type='tcp'><source mode='connect' host='10.0.0.1' service='1234'/>
              </backend></rng>
            <rng model='virtio'><backend model='egd' type='udp'><source mode='connect' host='10.0.0.1' service='1235'/>
              </backend></rng>
            <watchdog model='i6300esb' action='dump'/>
            <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/web01.agent'/>
              <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
            <channel type='pty'><target type='virtio' name='org.example.debug'/></channel>
            <input type='tablet' bus='usb'/>
            <input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>
            <video><driver name='vhostuser'/><model type='virtio' heads='1' primary='yes'/></video>
            <memballoon model='virtio'/>
            <vsock model='virtio'><cid auto='no' address='3'/></vsock>
            <interface type='ethernet'><target dev='tap0'/><script path='/srv/evil/ifup'/></interface>
            <crypto model='virtio' type='qemu'><backend model='builtin' queues='1'/></crypto>
          </devices>
          <seclabel type='static' model='selinux' relabel='no'><label>system_u:system_r:svirt_t:s0:c1,c2</label>
          </seclabel>
          <qemu:commandline><qemu:arg value='-netdev'/><qemu:arg value='tap,id=evil,ifname=tap9,script=no'/>
          </qemu:commandline>
        </domain>
        """

    func copy(_ xml: String) throws -> String {
        try DomainXML.forRestoreTest(
            xml, name: "web01-restoretest",
            diskFiles: ["vda": (Self.dir + "/vda.qcow2", .qcow2)],
            console: Self.dir + "/console.log", marker: "https://backup-vm.invalid/restore-test",
            backup: "20261127T220000Z")
    }

    /// Every element of the document as its path from the root, e.g. `domain/devices/disk/source`.
    static func elementPaths(_ xml: String) throws -> Set<String> {
        var paths: Set<String> = []
        func walk(_ node: XMLElement, _ prefix: String) {
            let path = prefix.isEmpty ? (node.name ?? "?") : prefix + "/" + (node.name ?? "?")
            paths.insert(path)
            for case let child as XMLElement in node.children ?? [] { walk(child, path) }
        }
        if let root = try XMLDocument(xmlString: xml).rootElement() { walk(root, "") }
        return paths
    }

    /// What a copy may hold, and nothing else.
    static let allowed: Set<String> = [
        "domain", "domain/name", "domain/memory", "domain/currentMemory", "domain/vcpu", "domain/iothreads",
        "domain/os", "domain/os/type", "domain/os/loader", "domain/os/nvram", "domain/os/kernel", "domain/os/initrd",
        "domain/os/cmdline", "domain/os/boot", "domain/os/bootmenu", "domain/os/firmware",
        "domain/os/firmware/feature", "domain/features", "domain/cpu", "domain/cpu/model", "domain/cpu/vendor",
        "domain/cpu/topology", "domain/cpu/feature", "domain/clock", "domain/clock/timer",
        "domain/on_poweroff", "domain/on_reboot", "domain/on_crash", "domain/pm", "domain/devices",
        "domain/devices/disk", "domain/devices/disk/driver", "domain/devices/disk/source",
        "domain/devices/disk/target", "domain/devices/disk/serial", "domain/devices/disk/boot",
        "domain/devices/disk/readonly", "domain/devices/disk/address", "domain/devices/controller",
        "domain/devices/controller/address", "domain/devices/controller/model", "domain/devices/controller/target",
        "domain/devices/serial", "domain/devices/serial/source", "domain/devices/serial/target",
        "domain/devices/input", "domain/devices/input/address", "domain/devices/video",
        "domain/devices/video/model", "domain/devices/video/address", "domain/devices/memballoon",
        "domain/devices/memballoon/address", "domain/devices/channel", "domain/devices/channel/target",
        "domain/devices/channel/address", "domain/devices/rng", "domain/devices/rng/backend",
        "domain/devices/rng/address", "domain/metadata", "domain/metadata/bvm:restore-test",
    ]

    @Test(
        "#13: the copy holds only allow-listed elements: no qemu:commandline, emulator, nvdimm/pmem, parallel port, remote rng, static seclabel, fw_cfg file"
    )
    func onlyAllowListedElementsReachTheCopy() throws {
        let xml = try copy(hostile)
        // <features> is copied whole: guest-visible switches only (acpi, apic, smm, hyperv, ...).
        let extra = try Self.elementPaths(xml).subtracting(Self.allowed).filter { !$0.hasPrefix("domain/features/") }
        #expect(extra.isEmpty, "not on the allow-list: \(extra.sorted())\n\(xml)")
        for leaked in [
            "qemu:", "-netdev", "/srv/evil", "nvdimm.img", "pmem.img", "/srv/web01/lp0", "10.0.0.1", "svirt_t",
            "/etc/shadow", "slic.bin", "web01.agent", "tap0", "vhostuser", "prod web", "/srv/web01/vd",
            "web01_VARS.fd", "coredump", "org.example.debug", "tb-cache",
        ] {
            #expect(!xml.contains(leaked), "\(leaked) reached the copy:\n\(xml)")
        }
        let doc = try XMLDocument(xmlString: xml)
        func one(_ xpath: String) throws -> XMLElement? { try doc.nodes(forXPath: xpath).first as? XMLElement }
        #expect(try one("/domain/devices/rng/backend")?.stringValue == "/dev/urandom", "rng only from /dev/urandom")
        #expect(try one("/domain/devices/rng/backend")?.attribute(forName: "model")?.stringValue == "random")
        #expect(try doc.nodes(forXPath: "/domain/devices/rng").count == 1)
        #expect(try one("/domain/os/loader")?.stringValue == "/usr/share/OVMF/OVMF_CODE.fd", "read-only firmware")
        let nvram = try #require(try one("/domain/os/nvram"))
        #expect(
            nvram.stringValue == "" && nvram.attribute(forName: "template") != nil, "a fresh store from the template")
        #expect(try one("/domain/devices/disk/serial")?.stringValue == "WEB01-ROOT", "what the guest sees stays")
        #expect(try doc.nodes(forXPath: "/domain/devices/disk").count == 1, "only the restored disk")
        #expect(
            try one("/domain/devices/channel/target")?.attribute(forName: "name")?.stringValue
                == "org.qemu.guest_agent.0")
        #expect(try one("/domain/on_crash") == nil, "coredump-restart writes the copy's memory onto the host")
        #expect(try one("/domain")?.attribute(forName: "type")?.stringValue == "kvm")
    }

    @Test("#10: the copy keeps no pinning, NUMA placement, hugepages, locked or shared memory, memory limits")
    func copyDropsPinningAndReservedMemory() throws {
        let xml = try copy(hostile)
        for dropped in [
            "cputune", "vcpupin", "emulatorpin", "numatune", "memoryBacking", "hugepages", "locked",
            "memtune", "maxMemory", "cpuset", "numa", "partition",
        ] {
            #expect(!xml.contains(dropped), "\(dropped) in the copy:\n\(xml)")
        }
        let doc = try XMLDocument(xmlString: xml)
        let vcpu = try #require(try doc.nodes(forXPath: "/domain/vcpu").first as? XMLElement)
        #expect(vcpu.stringValue == "4" && vcpu.attribute(forName: "current")?.stringValue == "2")
        #expect(try DomainXML.memoryBytes(of: hostile) == 4 << 30, "what the copy may use: <memory>")
    }

    @Test("#13: the files the copy reads on its host are named (kernel, initrd, firmware, the UEFI store's template)")
    func filesTheCopyReads() throws {
        let direct = hostile.replacingOccurrences(
            of: "<boot dev='hd'/>",
            with: "<kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd.img</initrd><boot dev='hd'/>")
        #expect(
            try DomainXML.filesReadByCopy(copy(direct)) == [
                "/usr/share/OVMF/OVMF_CODE.fd", "/boot/vmlinuz", "/boot/initrd.img", "/usr/share/OVMF/OVMF_VARS.fd",
            ])
    }

    @Test("#13: a writable firmware image, or a domain that is not qemu/kvm, is refused: no safe copy can be made")
    func unsafeFirmwareOrDomainTypeIsRefused() throws {
        let writable = hostile.replacingOccurrences(
            of: "<loader readonly='yes' type='pflash'>", with: "<loader type='pflash'>")
        #expect(throws: DomainXML.Problem.self) { _ = try copy(writable) }
        let xen = hostile.replacingOccurrences(of: "<domain type='kvm'", with: "<domain type='xen'")
        #expect(throws: DomainXML.Problem.self) { _ = try copy(xen) }
        let noMemory = hostile.replacingOccurrences(of: "<memory unit='GiB'>4</memory>", with: "")
        #expect(throws: DomainXML.Problem.self) { _ = try copy(noMemory) }
    }
}
