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
