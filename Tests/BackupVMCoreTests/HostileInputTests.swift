import Foundation
import Testing

@testable import BackupVMCore

/// Values from a hypervisor, a job file or the storage folder are hostile until checked (issue #9):
/// each case here failed before its fix.
@Suite("hostile input", .tags(.unit))
struct HostileInputTests {
    let dir = TempDir("hostile")

    /// Domain XML that would read a file on the backup server into the manifest (XXE).
    func xxe(_ secretFile: String) -> String {
        """
        <?xml version="1.0"?>
        <!DOCTYPE domain [<!ENTITY k SYSTEM "file://\(secretFile)">]>
        <domain type='qemu'><name>web01</name><description>&k;</description><devices>
        <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/srv/web01.raw'/>
        <target dev='vda'/></disk></devices></domain>
        """
    }

    @Test("XXE: domain XML with a DOCTYPE/ENTITY is refused everywhere it is parsed; the file never leaks")
    func externalEntitiesAreRefused() throws {
        let secret = dir.path + "/id_ed25519"
        dir.write("id_ed25519", "PRIVATE-KEY-MATERIAL")
        let xml = xxe(secret)
        let parses: [() throws -> String] = [
            { "\(try DomainXML.disks(of: xml, vm: "web01"))" },
            { try DomainXML.renamed(xml, from: "web01", to: "copy", diskSources: [:]) },
            { try DomainXML.withDiskSources(xml, [:]) },
        ]
        for parse in parses {
            do {
                let leaked = try parse()
                Issue.record("parsed hostile XML: \(leaked)")
            } catch {
                #expect("\(error)".contains("declares a DOCTYPE or ENTITY"), "\(error)")
                #expect(!"\(error)".contains("PRIVATE-KEY-MATERIAL"))
            }
        }
    }

    @Test("XXE through the pipeline: the backup fails with the reason, nothing is stored")
    func externalEntitiesFailTheBackup() throws {
        let hv = ScriptedVMs.files()
        let secret = dir.path + "/secret"
        dir.write("secret", "PRIVATE-KEY-MATERIAL")
        hv.xml = xxe(secret)
        let h = try PipelineHarness(hv)
        let run = try h.backup()
        #expect(run.result["reason"]?.contains("declares a DOCTYPE or ENTITY") == true, "\(run.result)")
        #expect(h.store.catalog.backups(of: h.vm).isEmpty && hv.count(.shutdown) == 0)
    }
}

extension HostileInputTests {
    @Test("#7: restore takes the VM's lock: refused while a job of that VM runs; a job meanwhile is refused")
    func restoreHoldsTheVMLock() throws {
        let h = try PipelineHarness(ScriptedVMs.files())
        let locks = h.services.spool.locks
        let job = try #require(try locks.tryAcquireVM(h.vm))
        job.describeHolder("pid=1 job=test")
        let restorer = BackupRestorer(configuration: h.configuration, logger: h.pipeline.logger)
        #expect(throws: RestoreError.vmBusy(name: h.vm, holder: "pid=1 job=test")) {
            _ = try restorer.restore(.init(vm: h.vm))
        }
        job.release()
        // With the lock free, the restore gets past it (and fails later: there is no backup yet).
        #expect { _ = try restorer.restore(.init(vm: h.vm)) } throws: { ($0 as? RestoreError)?.isNoBackups == true }
        #expect(try locks.tryAcquireVM(h.vm) != nil, "the restore released the lock")
    }
}

extension RestoreError {
    var isNoBackups: Bool { if case .noBackups = self { true } else { false } }
}

extension HostileInputTests {
    @Test("#5: a copy under a new name does not keep the original's UEFI variable store")
    func copyDropsNVRAM() throws {
        let xml = """
            <domain type='kvm'><name>web01</name><os><type>hvm</type>
            <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
            <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>
            <devices><disk type='file' device='disk'><source file='/srv/web01.raw'/><target dev='vda'/></disk></devices>
            </domain>
            """
        let copy = try DomainXML.renamed(xml, from: "web01", to: "copy", diskSources: ["vda": "/srv/copy.raw"])
        #expect(!copy.contains("web01_VARS.fd") && !copy.contains("<nvram"), "\(copy)")
        #expect(copy.contains("OVMF_CODE.fd"), "the loader stays")
    }
}

/// Crashes and hangs on hostile input (issue #9, finding 17).
@Suite("hostile names and files never crash or hang", .tags(.spool))
struct HostileFilesTests {
    let dir = TempDir("hostile-files")

    @Test("a backup directory named with non-ASCII digits is not a backup, and lists without a crash")
    func nonASCIIDigits() throws {
        #expect(Timestamps.parseCompact("٢٠٢٦١١٢٧T٢٢١٥٠٣Z") == nil)
        #expect(Timestamps.parseCompact("20261399T221503Z") == nil, "month 13")
        #expect(Timestamps.parseCompact("20261127T221503Z") != nil)
        dir.write("storage/web01/٢٠٢٦١١٢٧T٢٢١٥٠٣Z/manifest", "{}")
        #expect(BackupCatalog(storage: dir.path + "/storage").backups(of: "web01").isEmpty)
    }

    @Test("a syslog line cut at 8000 bytes inside a multi-byte character")
    func syslogCutInsideACharacter() {
        let writer = SyslogWriter(socketPath: dir.path + "/no-socket", facility: .daemon, reportFailure: false)
        for pad in 7900..<7910 { writer.send(severity: 6, message: String(repeating: "a", count: pad) + "é€😀é€😀") }
    }

    @Test("a FIFO, a link to /dev/zero and a huge file in new/ are neither followed nor waited on")
    func spoolFilesThatAreNotJobs() throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        #expect(mkfifo(spool.layout.new + "/fifo", 0o600) == 0)
        try FileManager.default.createSymbolicLink(atPath: spool.layout.new + "/zero", withDestinationPath: "/dev/zero")
        let huge = spool.layout.new + "/huge"
        #expect(FileManager.default.createFile(atPath: huge, contents: nil))
        #expect(truncate(huge, 1 << 30) == 0)
        // Each of these hung or exhausted memory before.
        #expect(spool.peek("fifo") == nil && spool.peek("zero") == nil && spool.peek("huge") == nil)
        for name in ["fifo", "zero"] {
            guard case .failure? = spool.read(name, in: .new) else {
                Issue.record("\(name) read as a job")
                continue
            }
        }
        guard case .failure(let error)? = spool.read("huge", in: .new) else {
            Issue.record("a 1 GiB file read as a job")
            return
        }
        #expect(error.description.contains("expected a small text file"))
        #expect(!spool.hasOpenJob(for: "web01"))
    }
}
