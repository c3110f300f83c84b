import Foundation
import Testing

@testable import BackupVMCore

/// Issue #19 item 14: the chunk helper is checked, then executed, under a predictable name in WorkPath;
/// staged copies and RAM states are written there. That is safe only while nobody but root can write
/// WorkPath or a directory above it, which nothing checked. Now every job and doctor refuse such a path.
@Suite(.tags(.spool), .serialized)
struct WorkPathGuardTests {
    let dir = TempDir("workpath")

    /// The check as the remote scripts run it, here under bash.
    func check(_ path: String) throws -> (ok: Bool, said: String) {
        let r = try runTool("/bin/bash", ["-c", WorkPathGuard.require(path)])
        return (r.status == 0, r.err)
    }

    enum Layout: String, CaseIterable {
        case rootOnly, groupWritable, worldWritableParent, stickyParent, ownedByAnotherUser, linkIntoAnUnsafeDirectory
        case notMadeYetUnderASafeParent, notMadeYetUnderAnUnsafeParent
    }

    @Test(arguments: Layout.allCases)
    func onlyAPathRootAloneCanChangeIsAccepted(_ layout: Layout) throws {
        let base = dir.path + "/\(layout.rawValue)"
        let work = base + "/parent/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        chmod(base, 0o755)
        chmod(base + "/parent", 0o755)
        chmod(work, 0o700)
        var path = work
        var safe = true
        switch layout {
        case .rootOnly: break
        case .groupWritable:
            chmod(work, 0o770)
            safe = false
        case .worldWritableParent:
            chmod(base + "/parent", 0o777)
            safe = false
        case .stickyParent:
            chmod(base + "/parent", 0o1777)
        case .ownedByAnotherUser:
            chown(work, 4321, 4321)
            safe = false
        case .linkIntoAnUnsafeDirectory:
            try FileManager.default.createDirectory(atPath: base + "/open/work", withIntermediateDirectories: true)
            chmod(base + "/open", 0o777)
            try FileManager.default.createSymbolicLink(atPath: base + "/link", withDestinationPath: base + "/open/work")
            path = base + "/link"
            safe = false
        case .notMadeYetUnderASafeParent:
            path = work + "/not/made/yet"
        case .notMadeYetUnderAnUnsafeParent:
            chmod(work, 0o777)
            path = work + "/not/made/yet"
            safe = false
        }
        let r = try check(path)
        #expect(r.ok == safe, "\(layout): \(r.said)")
        if !safe { #expect(r.said.contains("is not safe") && r.said.contains("chmod go-w"), "\(r.said)") }
    }

    /// A job on a host whose WorkPath others may write fails before anything of the VM is touched.
    @Test func aJobRefusesAnUnsafeWorkPath() throws {
        let fleet = try StandInFleet(vms: [("vm1", "kvm1")])
        chmod(fleet.dir.path + "/work", 0o777)
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let r = try runTool(
            Paths.binary("backup_vm"), ["run", "vm1", "--config-dir", fleet.configDir],
            environment: ["PATH": fleet.dir.path + "/bin:" + path])
        #expect(r.status == 1)
        #expect(r.err.contains("WorkPath") && r.err.contains("is writable by group or others"), "\(r.err)")
        #expect(fleet.events.isEmpty, "no disk was read")
        #expect(fleet.backups(of: "vm1").isEmpty)
    }
}
