import Foundation
import Testing

@testable import BackupVMCore

/// A backup server with one good backup of web01 and three hypervisors, whose restorer asks a scripted
/// locator query and reaches the hypervisors through a stand-in ssh that records every command it is
/// sent (and then fails like an unreachable host). What the stand-in never received was never written
/// on any hypervisor.
final class RestoreAsNewFixture: @unchecked Sendable {
    let harness: PipelineHarness
    let configuration: Configuration
    let sshLog: String
    let sshProgram: String
    let asked = CapturedMessages()

    init() throws {
        harness = try PipelineHarness(ScriptedVMs.files())
        guard case .succeeded = try harness.backup().outcome else {
            throw HarnessError(description: "the backup to restore from failed")
        }
        let dir = harness.dir
        // The same storage and spool, now with three hypervisors.
        dir.write(
            "backup_vm.d/backup_vm.conf",
            """
            HostServers='kvm1 kvm2 kvm3'
            BackupStorage=\(dir.path)/storage
            SyslogSocket=\(dir.path)/no-syslog
            """)
        configuration = try Configuration.load(directory: dir.path)
        sshLog = dir.path + "/ssh-commands.log"
        sshProgram = dir.path + "/recording-ssh"
        dir.write("recording-ssh", "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '\(sshLog)'\nexit 255\n")
        chmod(sshProgram, 0o755)
    }

    /// A restorer whose locator hears `answers[host]` for NEW (nil: not defined there) and records
    /// every question; a host in `unreachable` fails as ssh does when it cannot connect.
    func restorer(defined answers: [String: DomainState] = [:], unreachable: Set<String> = []) -> BackupRestorer {
        let asked = self.asked
        let query: VMLocator.Query = { host, vm throws(RemoteError) in
            asked.append("\(host.name) \(vm)")
            if unreachable.contains(host.name) {
                throw .connection(
                    host: host.name, detail: "ssh: connect to host \(host.name) port 22: Connection timed out")
            }
            return (answers[host.name], answers[host.name] == nil ? 0 : 1_700_000_000)
        }
        return BackupRestorer(
            configuration: configuration, logger: harness.pipeline.logger, locatorQuery: query, sshProgram: sshProgram)
    }

    /// Every line the stand-in ssh was given (arguments, the script last); empty when nothing was sent.
    var sentToHypervisors: [String] {
        ((try? String(contentsOfFile: sshLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The restore released copy01's lock. Polled: a process that another test spawns at that moment
    /// holds a copy of every descriptor of this process until its exec closes it, and so the lock.
    var newNameLockIsFree: Bool {
        let locks = harness.services.spool.locks
        return eventually(timeout: 10) { ((try? locks.tryAcquireVM("copy01")) ?? nil) != nil }
    }

    var request: BackupRestorer.Request { .init(vm: "web01", toHost: "kvm1", newName: "copy01") }

    /// Names in web01's and copy01's storage folders: a refused restore changes nothing on this server
    /// either.
    var serverState: [String] {
        let fm = FileManager.default
        let store = harness.store
        return ["web01", "copy01"].flatMap { vm in
            ((try? fm.contentsOfDirectory(atPath: store.vmDirectory(vm))) ?? []).map { "\(vm)/\($0)" }
        }.sorted()
    }
}

/// Issue #9, finding 5: `restore --as NEW` refuses while NEW is defined on any host of HostServers, or
/// while a host cannot be asked, before anything is written: the name mapping would reuse the existing
/// domain's disk files and LVs, and `virsh define` would fail only after they were overwritten.
@Suite("restore --as NEW refuses a name that exists or cannot be checked", .tags(.unit))
struct RestoreAsNewTests {
    @Test("NEW defined (shut off) on a second host: refused naming that host; nothing sent to any hypervisor")
    func nameDefinedOnAnotherHost() throws {
        let f = try RestoreAsNewFixture()
        let before = f.serverState
        let restorer = f.restorer(defined: ["kvm2": .shutOff])
        #expect(throws: RestoreError.nameTaken(name: "copy01", host: "kvm2")) { _ = try restorer.restore(f.request) }
        let message = RestoreError.nameTaken(name: "copy01", host: "kvm2").description
        #expect(message.contains("copy01 already exists on kvm2") && message.contains("write over its disks"))
        #expect(f.asked.all.sorted() == ["kvm1 copy01", "kvm2 copy01", "kvm3 copy01"], "every host is asked")
        #expect(f.sentToHypervisors.isEmpty, "\(f.sentToHypervisors)")
        #expect(f.serverState == before)
        #expect(f.newNameLockIsFree, "the lock of NEW is released")
    }

    @Test("NEW running on the target host itself: refused too, also with --force")
    func nameRunningOnTarget() throws {
        let f = try RestoreAsNewFixture()
        var request = f.request
        request.force = true
        let restorer = f.restorer(defined: ["kvm1": .running])
        #expect(throws: RestoreError.nameTaken(name: "copy01", host: "kvm1")) { _ = try restorer.restore(request) }
        #expect(f.sentToHypervisors.isEmpty, "--force never stops a VM that merely has the new name")
    }

    @Test("one host cannot be asked: refused naming it and why; nothing sent to any hypervisor")
    func hostCannotBeAsked() throws {
        let f = try RestoreAsNewFixture()
        let before = f.serverState
        let restorer = f.restorer(unreachable: ["kvm3"])
        #expect {
            _ = try restorer.restore(f.request)
        } throws: { error in
            guard case .cannotCheckName(let name, let host, let detail)? = error as? RestoreError else { return false }
            return name == "copy01" && host == "kvm3" && detail.contains("Connection timed out")
                && "\(error)".contains("cannot tell whether copy01 already exists on kvm3")
        }
        #expect(f.sentToHypervisors.isEmpty, "\(f.sentToHypervisors)")
        #expect(f.serverState == before)
        #expect(f.newNameLockIsFree, "the lock of NEW is released")
    }
}

/// The control for the tests above: with NEW defined nowhere, the same restorer does send the disk
/// write to the target host, so an empty record there means that nothing was written.
@Suite("restore --as NEW goes ahead when the name is free", .tags(.spool))
struct RestoreAsNewControlTests {
    @Test("NEW defined nowhere: the first command goes to the target host and writes copy01's disk")
    func freeNameReachesTheTarget() throws {
        let f = try RestoreAsNewFixture()
        #expect(throws: RemoteError.self) { _ = try f.restorer().restore(f.request) }
        let sent = f.sentToHypervisors
        #expect(sent.contains("kvm1"), "\(sent)")
        #expect(sent.contains { $0.contains("copy01-vda.raw") }, "\(sent)")
        #expect(!sent.contains("kvm2") && !sent.contains("kvm3"), "only the target is written to")
    }
}
