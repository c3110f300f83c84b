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
}
