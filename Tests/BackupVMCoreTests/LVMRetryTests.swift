import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9's fault suite: `lvremove` says "in use" at first (udev or a reader still holds the
/// snapshot for a moment after the copy). The real removal script runs through a stand-in ssh with an
/// lvremove stub that refuses twice, then succeeds.
@Suite("lvremove 'in use' at first", .tags(.spool))
struct LVMRetryTests {
    let dir = TempDir("lvretry")

    @Test("the snapshot is removed on the third try, and only ours is ever named")
    func inUseAtFirst() throws {
        let count = dir.path + "/lvremove.count"
        let sandbox = try SandboxHost(
            dir,
            stubs: [
                "lvremove": """
                n=$(( $(cat '\(count)' 2>/dev/null || echo 0) + 1 )); echo $n > '\(count)'
                [ $n -ge 3 ] || { echo "  Logical volume vg0/web1-bvmsnap-1 in use." >&2; exit 5; }
                """
            ])
        let snapshot = LogicalVolume(
            vg: "vg0", lv: "web1" + BackupNames.snapshotMarker + "20261127T010203Z", sizeBytes: 0)
        try LVM(host: sandbox.host).removeSnapshot(snapshot)
        #expect(
            try String(contentsOfFile: count, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == "3")
        let removed = sandbox.loggedArguments.filter { $0.hasPrefix("vg0/") }
        #expect(Set(removed) == [snapshot.fullName], "every call named our snapshot: \(removed)")
    }

    @Test("a snapshot that is already gone is not an error (a retry after a lost connection)")
    func alreadyGone() throws {
        let sandbox = try SandboxHost(dir, stubs: ["lvs": "exit 5", "lvremove": "echo unexpected >&2; exit 9"])
        let snapshot = LogicalVolume(
            vg: "vg0", lv: "web1" + BackupNames.snapshotMarker + "20261127T010203Z", sizeBytes: 0)
        try LVM(host: sandbox.host).removeSnapshot(snapshot)
        #expect(!sandbox.loggedArguments.contains("== lvremove"), "lvremove was not run")
    }
}
