import Foundation
import Testing

@testable import BackupVMCore

@Suite("domain XML, quoting, ssh command lines", .tags(.unit))
struct DomainAndRemoteTests {
    let xml = """
        <domain type='qemu'>
          <name>web01</name>
          <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/var/lib/libvirt/images/web01-vda.raw'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/img/data.qcow2'/><target dev='vdb' bus='virtio'/></disk>
            <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/web01-swap'/><target dev='vdc' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='sda' bus='sata'/></disk>
            <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/></interface>
            <serial type='file'><source path='/var/lib/libvirt/images/web01-console.log'/></serial>
          </devices>
        </domain>
        """

    @Test func disksAreParsedAndCdromsSkipped() throws {
        let disks = try DomainXML.disks(of: xml, vm: "web01")
        #expect(
            disks == [
                DomainDisk(target: "vda", kind: .file, format: .raw, source: "/var/lib/libvirt/images/web01-vda.raw"),
                DomainDisk(target: "vdb", kind: .file, format: .qcow2, source: "/srv/img/data.qcow2"),
                DomainDisk(target: "vdc", kind: .block, format: .raw, source: "/dev/vg0/web01-swap"),
            ])
        func excluded(_ disk: DomainDisk, by references: [String]) -> Bool {
            DiskExclusion(references).excludes(disk, devices: [:])
        }
        #expect(excluded(disks[2], by: ["vg0/web01-swap"]))
        #expect(excluded(disks[2], by: ["/dev/vg0/web01-swap"]))
        #expect(excluded(disks[2], by: ["web01-swap"]))
        #expect(!excluded(disks[2], by: ["vg1/web01-swap"]))
        #expect(!excluded(disks[0], by: ["web01-vda.raw"]), "only block devices can be excluded")
    }

    @Test func unsupportedDisksFailWithTheReason() {
        let network = xml.replacingOccurrences(of: "<disk type='block'", with: "<disk type='network'")
        #expect { _ = try DomainXML.disks(of: network, vm: "web01") } throws: { "\($0)".contains("type 'network'") }
        let vmdk = xml.replacingOccurrences(of: "type='qcow2'", with: "type='vmdk'")
        #expect { _ = try DomainXML.disks(of: vmdk, vm: "web01") } throws: { "\($0)".contains("format 'vmdk'") }
        let dotdot = xml.replacingOccurrences(of: "/srv/img/data.qcow2", with: "/srv/../etc/shadow")
        #expect { _ = try DomainXML.disks(of: dotdot, vm: "web01") } throws: { "\($0)".contains("'..'") }
    }

    @Test func renamedCopyHasNoUUIDNoMACAndNewPaths() throws {
        let sources = [
            "vda": "/var/lib/libvirt/images/web01-copy-vda.raw", "vdb": "/srv/img/web01-copy-data.qcow2",
            "vdc": "/dev/vg0/web01-copy-swap",
        ]
        let out = try DomainXML.renamed(xml, from: "web01", to: "web01-copy", diskSources: sources)
        #expect(out.contains("<name>web01-copy</name>"))
        #expect(!out.contains("<uuid>") && !out.contains("52:54:00:12:34:56"))
        #expect(out.contains("/var/lib/libvirt/images/web01-copy-vda.raw"))
        #expect(!out.contains("/srv/img/data.qcow2"), "no disk of the original's (issue #19, item 5)")
        #expect(out.contains("/var/lib/libvirt/images/web01-copy-console.log"))
        #expect(
            try DomainXML.disks(of: out, vm: "web01-copy").map(\.source) == ["vda", "vdb", "vdc"].map { sources[$0] })
        #expect(throws: DomainXML.Problem.self, "a disk without a new path is refused, not left as it was") {
            _ = try DomainXML.renamed(xml, from: "web01", to: "c", diskSources: ["vda": "/x/c-vda.raw"])
        }
        let withoutSwap = try DomainXML.renamed(
            xml, from: "web01", to: "c", diskSources: ["vda": "/x/c-vda.raw", "vdb": "/x/c-data.qcow2"],
            droppingDisks: ["vdc"])
        #expect(
            try DomainXML.disks(of: withoutSwap, vm: "c").map(\.target) == ["vda", "vdb"],
            "excluded disks are not shared with the copy")
    }

    @Test(arguments: [
        ("web01", "web01"), ("a b", "'a b'"), ("it's", "'it'\\''s'"), ("$(reboot)", "'$(reboot)'"), ("", "''"),
    ])
    func quoting(_ input: String, _ expected: String) {
        #expect(ShellQuote.quote(input) == expected)
    }

    @Test func sshCommandLine() {
        let host = RemoteHost(
            name: "kvm1", sshConfig: "/etc/backup_vm/ssh_config", connectTimeout: 7,
            ciphers: MainConfig.defaultCiphers)
        let argv = host.argv("virsh list")
        #expect(argv.first == "ssh")
        #expect(argv.contains("BatchMode=yes") && argv.contains("ConnectTimeout=7"))
        #expect(!argv.joined(separator: " ").contains("StrictHostKeyChecking=no"), "host keys are always verified")
        #expect(argv.contains("Ciphers=\(MainConfig.defaultCiphers)"))
        #expect(
            Array(argv.suffix(3)) == ["--", "kvm1", "bash -c 'umask 077; set -euo pipefail; virsh list'"],
            "files made on a hypervisor are root's alone")
    }

    @Test func exitCodesAreClassified() {
        let host = RemoteHost(name: "kvm1", sshConfig: nil, connectTimeout: 5)
        #expect(throws: RemoteError.connection(host: "kvm1", detail: "x")) {
            try host.check(255, stderr: "x", what: "w")
        }
        #expect(throws: RemoteError.command(host: "kvm1", what: "w", status: 3, stderr: "y")) {
            try host.check(3, stderr: "y", what: "w")
        }
        #expect(throws: Never.self) { try host.check(0, stderr: "", what: "w") }
        #expect(
            RemoteError.connection(host: "kvm1", detail: "Host key verification failed.").description.contains(
                "backup_vm doctor"))
    }
}
