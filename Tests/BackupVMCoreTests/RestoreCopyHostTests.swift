import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// Issue #19, items 6 and 10, with the real restorer and restore test running their real scripts
/// through a stand-in ssh (RestoreSandbox): what a copy needs on its host is checked there before
/// anything is written, and a restore test's copy is removed only as far as that is safe.
@Suite("restore: what a copy needs on its host", .tags(.spool))
struct RestoreCopyHostTests {
    /// The sandbox's "images" directory on kvm1, with web01's file disk in it.
    func sandbox(xml: (RestoreSandbox, String) -> String) throws -> RestoreSandbox {
        let s = try RestoreSandbox()
        let disk = DomainDisk(
            target: "vda", kind: .file, format: .raw, source: s.sandbox.sandbox + "/images/web01-vda.raw")
        s.dir.write("sandbox/images/web01-vda.raw", "the disk as it is")
        try s.storeBackup([(disk, nil, Data(repeating: 7, count: 64 << 10))], domainXML: xml(s, disk.source))
        return s
    }

    static func domain(disk: String, memory: String = "<memory unit='MiB'>128</memory>", devices: String = "")
        -> String
    {
        """
        <domain type='qemu'><name>web01</name>\(memory)<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
        <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='\(disk)'/>
        <target dev='vda' bus='virtio'/></disk>\(devices)</devices></domain>
        """
    }

    @Test(
        "#6: restore --as when the console's directory does not exist on the target: refused first, naming it; then it goes"
    )
    func consoleDirectoryMissingOnTheTarget() throws {
        let s = try sandbox { s, disk in
            Self.domain(
                disk: disk,
                devices: "<serial type='file'><source path='\(s.sandbox.sandbox)/consoles/web01/console-web01.log'/>"
                    + "<target port='0'/></serial>")
        }
        let consoles = s.sandbox.sandbox + "/consoles/web01"
        #expect {
            _ = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
        } throws: { error in
            "\(error)".contains(consoles) && "\(error)".contains("kvm1") && "\(error)".contains("mkdir")
        }
        #expect(s.changes.isEmpty, "refused before anything was written or defined: \(s.changes)")
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: s.sandbox.sandbox + "/images") == ["web01-vda.raw"])

        try FileManager.default.createDirectory(atPath: consoles, withIntermediateDirectories: true)
        _ = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
        let defined = try #require(s.definedXML("web02"))
        #expect(defined.contains(consoles + "/console-web02.log"), "the file renamed in its directory: \(defined)")
        #expect(!defined.contains("/consoles/web02"))
    }

    /// Found in the sweep of issue #19 (item 5's class): `restore --as` replaced a file or LV that
    /// already had the copy's name, and removed it after the define; it may be another VM's disk.
    @Test("restore --as never replaces a disk that is there already, unless --force")
    func aCopyNeverReplacesAnExistingDisk() throws {
        let s = try sandbox { _, disk in Self.domain(disk: disk) }
        s.dir.write("sandbox/images/web02-vda.raw", "somebody's disk")
        #expect {
            _ = try s.restorer.restore(.init(vm: s.vm, newName: "web02"))
        } throws: { error in
            "\(error)".contains("web02-vda.raw exists on kvm1") && "\(error)".contains("--force")
        }
        #expect(s.changes.isEmpty, "\(s.changes)")
        #expect(
            try String(contentsOfFile: s.sandbox.sandbox + "/images/web02-vda.raw", encoding: .utf8)
                == "somebody's disk")
        _ = try s.restorer.restore(.init(vm: s.vm, newName: "web02", force: true))
        #expect(
            FileManager.default.contents(atPath: s.sandbox.sandbox + "/images/web02-vda.raw")
                == Data(repeating: 7, count: 64 << 10))
    }

    func restoreTest(_ s: RestoreSandbox, profile: String = "RestoreTestSeconds=1\n") throws -> RestoreTest {
        s.dir.write("vmsnapshot.d/web01", profile)
        let configuration = try Configuration.load(directory: s.dir.path)
        let messages = s.messages
        let restorer = BackupRestorer(
            configuration: configuration,
            logger: Logger(label: "restore-test") { _ in CapturingLogHandler(messages: messages) },
            locatorQuery: VMLocator.virshQuery, sshProgram: s.dir.path + "/ssh")
        return RestoreTest(configuration: configuration, restorer: restorer)
    }

    @Test("#10: restore-test refuses a copy the host has no memory for (MemAvailable), before anything is written")
    func restoreTestWithoutMemory() throws {
        let s = try sandbox { _, disk in Self.domain(disk: disk, memory: "<memory unit='TiB'>64</memory>") }
        let test = try restoreTest(s)
        #expect {
            _ = try test.run(.init(vm: s.vm))
        } throws: { error in
            let text = "\(error)"
            return text.contains("memory") && text.contains("kvm1") && text.contains("64.0 TiB")
                && text.contains("MemAvailable")
        }
        #expect(!s.changes.contains { $0.hasPrefix("virsh define") || $0.hasPrefix("virsh start") }, "\(s.changes)")
        let ref = try #require(BackupCatalog(storage: s.dir.path + "/storage").newestBackup(of: s.vm))
        let record = try #require(BackupVerifier.lastRecord(ref))
        #expect(record.restoreTest?.ok == false, "recorded as a test that failed before it booted")
    }

    @Test(
        "#13: restore-test refuses a copy whose kernel, initrd or firmware is a file not every user of the host may read"
    )
    func restoreTestReadsOnlyWorldReadableFiles() throws {
        // The control's kernel: a file anyone may read (in /tmp, 0644); the initrd a root-only one.
        let kernel = "/tmp/bvm-test-kernel-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        FileManager.default.createFile(
            atPath: kernel, contents: Data("kernel".utf8), attributes: [.posixPermissions: 0o644])
        defer { unlink(kernel) }
        let secret = TempDir("restore-secret")
        secret.write("key", "PRIVATE-KEY-MATERIAL")
        chmod(secret.path + "/key", 0o600)
        func os(_ initrd: String) -> String {
            "<os><type arch='x86_64'>hvm</type><kernel>\(kernel)</kernel><initrd>\(initrd)</initrd></os>"
        }
        let s = try sandbox { _, disk in
            Self.domain(disk: disk).replacingOccurrences(
                of: "<os><type arch='x86_64'>hvm</type></os>", with: os(secret.path + "/key"))
        }
        #expect {
            _ = try restoreTest(s).run(.init(vm: s.vm))
        } throws: { error in
            "\(error)".contains(secret.path + "/key") && "\(error)".contains("every user")
        }
        #expect(!s.changes.contains { $0.hasPrefix("virsh define") }, "\(s.changes)")

        let readable = try sandbox { _, disk in
            Self.domain(disk: disk).replacingOccurrences(
                of: "<os><type arch='x86_64'>hvm</type></os>", with: os(kernel))
        }
        let (_, record) = try restoreTest(readable).run(.init(vm: readable.vm))
        #expect(record.ok, "\(record)")
    }

    @Test("the control: a copy that fits boots in the sandbox (defined from the allow-list, started, watched, removed)")
    func restoreTestThatFits() throws {
        let s = try sandbox { _, disk in Self.domain(disk: disk) }
        let (_, record) = try restoreTest(s).run(.init(vm: s.vm))
        #expect(record.ok && record.signal == "running", "\(record)")
        #expect(
            s.changes.contains { $0.hasPrefix("virsh define") } && s.changes.contains { $0.hasPrefix("virsh start") })
        #expect(s.state(of: "web01-restoretest") == nil, "undefined afterwards")
        #expect(!FileManager.default.fileExists(atPath: s.sandbox.sandbox + "/work/web01/restoretest"))
    }

    @Test("the copy's removal fails closed: libvirt that cannot be asked, a copy that does not stop")
    func copyRemovalFailsClosed() throws {
        let s = try sandbox { _, disk in Self.domain(disk: disk) }
        let test = try restoreTest(s)
        let directory = s.sandbox.sandbox + "/work/web01/restoretest"
        s.dir.write("sandbox/work/web01/restoretest/vda.raw", "the running copy's disk")
        s.dir.write(
            "domains/defined-web01-restoretest.xml",
            "<domain><name>web01-restoretest</name><metadata><bvm:restore-test xmlns:bvm='\(RestoreTestCopy.marker)'/>"
                + "</metadata></domain>")
        s.setState("running", of: "web01-restoretest")

        s.dir.write("domains/.down", "")
        #expect(throws: (any Error).self) { _ = try test.removeCopies(of: s.vm) }
        #expect(FileManager.default.fileExists(atPath: directory + "/vda.raw"), "libvirt down is not 'no domain'")
        try FileManager.default.removeItem(atPath: s.dir.path + "/domains/.down")

        s.dir.write("domains/.destroy-fails", "")
        #expect(throws: (any Error).self) { _ = try test.removeCopies(of: s.vm) }
        #expect(s.state(of: "web01-restoretest") == "running", "a copy that did not stop is not undefined")
        #expect(FileManager.default.fileExists(atPath: directory + "/vda.raw"), "nor its disk removed under it")
        try FileManager.default.removeItem(atPath: s.dir.path + "/domains/.destroy-fails")

        _ = try test.removeCopies(of: s.vm)
        #expect(s.state(of: "web01-restoretest") == nil && !FileManager.default.fileExists(atPath: directory))
    }
}
