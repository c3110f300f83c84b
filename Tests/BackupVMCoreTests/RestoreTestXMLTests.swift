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
        let cid = try #require(try nodes("//vsock/cid").first)
        #expect(cid.attribute(forName: "auto")?.stringValue == "yes" && cid.attribute(forName: "address") == nil)
        #expect(
            try nodes("//sysinfo/system/entry[@name='uuid']").isEmpty, "libvirt refuses a sysinfo UUID without <uuid>")
        #expect(try nodes("//sysinfo/system/entry[@name='serial']").count == 1)
        #expect(try nodes("//filesystem").isEmpty && nodes("//shmem").isEmpty && nodes("//tpm").isEmpty)
        #expect(try nodes("//graphics").isEmpty, "no port clashing with the original's")
        #expect(try nodes("//input").count == 1, "the tablet stays, the host's input device does not")
        #expect(!xml.contains("https://example.org/app"), "the original's metadata is not carried over")
        #expect(xml.contains("https://backup-vm.invalid/restore-test") && xml.contains("20261127T220000Z"), "\(xml)")
    }
}
