import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// Store=chunks through the hypervisor seam: the stages store each disk as an index of chunks in the
/// real store; a failure leaves nothing in it; verify and the restore's check read every chunk.
@Suite("Store=chunks through the hypervisor seam", .tags(.unit))
struct ChunkPipelineTests {
    static var chunkMain: String { "Store=chunks\nChunkHelper=\(Paths.binary("bvm-chunk-helper"))" }

    func harness(_ h: ScriptedHypervisor = ScriptedVMs.files(), mode: SnapshotMode = .cold, keepOnHost: Bool = false)
        throws -> PipelineHarness
    {
        try PipelineHarness(h, mode: mode, keepOnHost: keepOnHost, main: Self.chunkMain)
    }

    func chunkStore(_ h: PipelineHarness) -> ChunkStore { ChunkStore(storage: h.configuration.main.backupStorage) }

    func manifest(_ h: PipelineHarness) throws -> Manifest {
        try Manifest.read(backupDirectory: try #require(h.store.catalog.newestBackup(of: h.vm)).path)
    }

    @Test("each disk becomes an index of chunks; the chunks are in the store, nothing staged")
    func coldBackupIntoTheStore() throws {
        let h = try harness(keepOnHost: true)
        let run = try h.backup()
        #expect(run.result["status"] == "done", "\(run.result)")
        #expect(h.hypervisor.calls.filter { [.copyImage, .sendChunks].contains($0) } == [.sendChunks, .sendChunks])
        let m = try manifest(h)
        #expect(m.store == .chunks && m.formatVersion == 4)
        #expect(m.disks.map(\.file) == ["vda.index", "vdb.index"])
        #expect(m.disks.allSatisfy { $0.chunks?.chunks == 2 })
        #expect(m.disks.map { $0.chunks?.newChunks } == [2, 1], "vdb shares its first chunk with vda")
        #expect(!m.keptOnHost, "no copy is kept on the hypervisor with Store=chunks")
        #expect(h.messages.contains("with Store=chunks none is kept"))
        let store = chunkStore(h)
        #expect(ChunkTestData.storedChunks(store).count == 3)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: store.root + "/.staging")) ?? [] == [])
        let backup = try #require(h.store.catalog.newestBackup(of: h.vm))
        #expect(BackupVerifier().verify(backup).ok)
        try StoredImageCheck(backup: backup).check(m.disks)
    }

    @Test("a second backup of unchanged disks adds no chunk")
    func secondBackupAddsNothing() throws {
        let h = try harness()
        _ = try h.goodBackup()
        #expect(try h.backup().result["status"] == "done")
        #expect(try manifest(h).disks.map { $0.chunks?.newChunks } == [0, 0])
        #expect(ChunkTestData.storedChunks(chunkStore(h)).count == 3)
        #expect(h.store.catalog.backups(of: h.vm).count == 2)
    }

    @Test("a failed transfer leaves no chunk and no staging behind, the VM running, earlier backups intact")
    func failureLeavesTheStoreAsItWas() throws {
        let h = try harness(ScriptedVMs.files())
        let earlier = try h.goodBackup()
        let before = Set(ChunkTestData.storedChunks(chunkStore(h)))
        h.hypervisor.fail(.sendChunks, at: 4)  // the second disk of the second backup
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: earlier, reason: "injected failure of sendChunks")
        #expect(Set(ChunkTestData.storedChunks(chunkStore(h))) == before)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: chunkStore(h).root + "/.staging")) ?? [] == [])
    }

    @Test("a missing helper fails the job before the VM is touched, naming it and ChunkHelper=")
    func missingHelper() throws {
        let h = try PipelineHarness(
            ScriptedVMs.files(), main: "Store=chunks\nChunkHelper=/nonexistent/bvm-chunk-helper")
        let run = try h.backup()
        try h.expectNothingLost(run, prior: .running, earlier: nil, reason: "/nonexistent/bvm-chunk-helper")
        #expect(run.result["reason"]?.contains("ChunkHelper=") == true)
        #expect(!h.hypervisor.calls.contains(.shutdown))
    }

    @Test("a helper installed as a link is followed; a directory or a missing file is not a helper")
    func helperByLink() throws {
        let dir = TempDir("helperlink")
        let link = dir.path + "/bvm-chunk-helper"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Paths.binary("bvm-chunk-helper"))
        let viaLink = try ChunkHelper.load(path: link)
        #expect(viaLink.sha256 == (try ChunkHelper.load(path: Paths.binary("bvm-chunk-helper")).sha256))
        #expect(throws: ChunkHelperError.missing(path: dir.path)) { try ChunkHelper.load(path: dir.path) }
        #expect(throws: ChunkHelperError.missing(path: dir.path + "/none")) {
            try ChunkHelper.load(path: dir.path + "/none")
        }
    }

    @Test("live: every export goes through the helper; the content is raw")
    func liveIntoTheStore() throws {
        let h = try harness(ScriptedVMs.files(), mode: .live)
        #expect(try h.backup().result["status"] == "done")
        #expect(h.hypervisor.calls.filter { [.copyExport, .sendChunks].contains($0) } == [.sendChunks, .sendChunks])
        let m = try manifest(h)
        #expect(m.disks.allSatisfy { $0.content == .raw && $0.chunks != nil })
        #expect(m.downtimeSeconds == 0)
    }

    @Test("a damaged chunk: verify names every backup that uses it; a restore refuses before writing")
    func damagedChunkIsNamedForEveryBackup() throws {
        let h = try harness()
        _ = try h.goodBackup()
        #expect(try h.backup().result["status"] == "done")
        let backups = h.store.catalog.backups(of: h.vm)
        #expect(backups.count == 2)
        // The chunk both disks of both backups share: flip one byte of its stored frame.
        let shared = ChunkTestData.digest(ChunkTestData.text(ChunkTestData.chunk, seed: h.hypervisor.name.count))
        let path = chunkStore(h).chunkPath(shared)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let verifier = BackupVerifier()
        for backup in backups {
            let report = verifier.verify(backup)
            #expect(!report.ok)
            #expect(report.problems.count == 2, "both disks use it: \(report.problems)")
            #expect(report.problems.allSatisfy { $0.detail.contains(shared.hex) && $0.detail.contains("damaged") })
            let m = try Manifest.read(backupDirectory: backup.path)
            #expect(throws: RestoreError.self) { try StoredImageCheck(backup: backup).check(m.disks) }
        }
    }

    /// Damage a stored chunk file: cut it short, or flip a byte in it.
    enum Damage: String, CaseIterable { case truncated, bitFlipped }

    func damage(_ path: String, _ how: Damage) throws {
        var bytes = try #require(FileManager.default.contents(atPath: path))
        switch how {
        case .truncated: bytes = bytes.prefix(bytes.count / 2)
        case .bitFlipped: bytes[bytes.count / 2] ^= 0x40
        }
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    /// Issue #19 item 2: a damaged chunk was reused forever (`contains` checked only that the file is
    /// there): every later backup answered "known" and committed an index naming it. Now verify moves it
    /// to the quarantine, every backup naming it is recorded bad (status does not count it as good),
    /// and the next backup sends the content again, which makes the store whole.
    @Test(arguments: Damage.allCases)
    func aDamagedChunkIsQuarantinedAndSentAgain(_ how: Damage) throws {
        let h = try harness()
        _ = try h.goodBackup()
        #expect(try h.backup().result["status"] == "done")
        let backups = h.store.catalog.backups(of: h.vm)
        let shared = ChunkTestData.digest(ChunkTestData.text(ChunkTestData.chunk, seed: h.hypervisor.name.count))
        let store = chunkStore(h)
        try damage(store.chunkPath(shared), how)
        // Only the newest is verified (as `backup_vm verify VM` does); the older one names it too.
        let report = BackupVerifier().verify(backups[1])
        #expect(!report.ok && report.problems.allSatisfy { $0.detail.contains("moved to") }, "\(report.problems)")
        #expect(!store.contains(shared), "out of the store")
        let quarantined = try Files.entries(store.root + "/.quarantine")
        #expect(quarantined.count == 1 && quarantined[0].hasPrefix(shared.hex + ".zst."), "\(quarantined)")
        for backup in backups {
            #expect(BackupVerifier.lastRecord(backup)?.isBad == true, "\(backup.id) names the damaged chunk")
        }
        let history = FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0]
        #expect(history.newestBackup == nil && history.stale, "no backup of it counts as good: \(history)")
        // The next backup needs the content again: it is sent, not answered "known".
        #expect(try h.backup().result["status"] == "done")
        #expect(try manifest(h).disks.map { $0.chunks?.newChunks } == [1, 0])
        #expect(store.contains(shared))
        let newest = try #require(h.store.catalog.newestBackup(of: h.vm))
        #expect(BackupVerifier().verify(newest).ok)
        #expect(FleetHistory(configuration: h.configuration).histories(of: [h.vm])[0].newestBackup?.id == newest.id)
        #expect(BackupVerifier().verify(backups[0]).ok, "the older backup restores again: the content is back")
    }

    /// A restore's check that finds a damaged chunk quarantines it too (and refuses before writing).
    @Test func aRestoresCheckQuarantinesADamagedChunk() throws {
        let h = try harness()
        _ = try h.goodBackup()
        let backup = try #require(h.store.catalog.newestBackup(of: h.vm))
        let m = try manifest(h)
        let index = try ChunkIndex.parse(
            try Files.readRegularFileOrThrow(backup.path + "/vdb.index", limit: 1 << 20), file: "vdb.index")
        guard case .chunk(let last)? = index.entries.last else {
            Issue.record("no chunk")
            return
        }
        try damage(chunkStore(h).chunkPath(last), .bitFlipped)
        #expect(throws: RestoreError.self) { try StoredImageCheck(backup: backup).check(m.disks) }
        #expect(!chunkStore(h).contains(last))
        #expect(BackupVerifier.lastRecord(backup)?.isBad == true)
    }

    /// No index is committed that names a chunk known bad: a chunk this backup found in the store and
    /// that a verify quarantined before the commit fails the commit; nothing is visible.
    @Test func aChunkQuarantinedDuringTheBackupFailsItsCommit() throws {
        let h = try harness()
        _ = try h.goodBackup()
        let first = try #require(h.store.catalog.newestBackup(of: h.vm))
        let index = try ChunkIndex.parse(
            try Files.readRegularFileOrThrow(first.path + "/vda.index", limit: 1 << 20), file: "vda.index")
        guard case .chunk(let vdaOwn)? = index.entries.last else {
            Issue.record("no chunk")
            return
        }
        let store = chunkStore(h)
        var calls = 0
        h.hypervisor.onCall(.sendChunks) {
            calls += 1
            // While the second disk is sent, vda's own chunk (found "known" a moment ago) turns out damaged.
            if calls == 2 {
                try? self.damage(store.chunkPath(vdaOwn), .truncated)
                _ = try? store.read(vdaOwn, length: 1)
            }
        }
        let run = try h.backup()
        #expect(run.result["status"] == "failed")
        #expect(run.result["reason"]?.contains("left the store while it ran") == true, "\(run.result)")
        #expect(h.hypervisor.vmState == .running)
        #expect(h.storageEntries == [first.id], "nothing partial: \(h.storageEntries)")
        #expect(((try? Files.entries(store.root + "/.staging")) ?? []).isEmpty)
        #expect(h.store.catalog.backups(of: h.vm).map(\.id) == [first.id])
        #expect(BackupVerifier.lastRecord(first)?.isBad == true)
    }
}
