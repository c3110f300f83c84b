import Foundation
import Testing

@testable import BackupVMCore

/// "virsh failed" is not "not defined" (issue #9, finding 2): with libvirtd restarting, a thaw that
/// read the VM as absent would end the job `done` with the VM off.
@Suite("virsh: a domain that does not exist vs virsh failing", .tags(.spool))
struct VirshStateTests {
    let dir = TempDir("virsh")

    @Test("domain not found: nil; state and sighting agree; inspect says absent")
    func notFound() throws {
        let sandbox = try SandboxHost(dir, stubs: ["virsh": "echo \"error: failed to get domain 'web01'\" >&2; exit 1"])
        let virsh = Virsh(host: sandbox.host)
        #expect(try virsh.state("web01") == nil)
        #expect(try virsh.sighting("web01").state == nil)
        #expect(try virsh.inspect("web01") == nil)
    }

    @Test("libvirtd down: every query is an error naming virsh's message, never 'absent'")
    func virshFails() throws {
        let sandbox = try SandboxHost(
            dir, stubs: ["virsh": "echo 'error: failed to connect to the hypervisor' >&2; exit 1"])
        let virsh = Virsh(host: sandbox.host)
        for query in [
            { _ = try virsh.state("web01") }, { _ = try virsh.sighting("web01") }, { _ = try virsh.inspect("web01") },
        ] {
            #expect { try query() } throws: { "\($0)".contains("failed to connect to the hypervisor") }
        }
    }

    @Test("a running domain is running")
    func running() throws {
        let sandbox = try SandboxHost(dir, stubs: ["virsh": "echo running"])
        #expect(try Virsh(host: sandbox.host).state("web01") == .running)
    }
}
