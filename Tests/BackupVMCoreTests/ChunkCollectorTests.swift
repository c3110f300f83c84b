import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// The chunk store's garbage collector on real files: what it removes, what it must keep (chunks of
/// committed backups, chunks a running backup uses), and that a collector killed mid-way leaves every
/// committed backup restorable.
@Suite(.tags(.spool), .serialized)
struct ChunkCollectorTests {
    let dir = TempDir("gc")
    var storage: String { dir.path + "/storage" }
    var store: ChunkStore { ChunkStore(storage: storage) }
    let chunk = 64 * 1024  // small chunks' content; the chunk size of the index is the real one

    /// A committed backup of `vm` whose one disk is made of these chunk contents (each at most 4 MiB;
    /// all but the last are padded to full chunks), written through the real receiver.
    @discardableResult
    func commitBackup(_ vm: String, id: String, _ contents: [[UInt8]]) throws -> BackupRef {
        let full = ChunkFormat.chunkSize
        var frames = FrameCodec.encode(.hello(version: ChunkFormat.protocolVersion, chunkSize: UInt32(full)))
        var datas: [[UInt8]] = []
        var total = 0
        for (i, c) in contents.enumerated() {
            let content = i == contents.count - 1 ? c : c + [UInt8](repeating: 7, count: full - c.count)
            frames += FrameCodec.encode(.digest(ChunkTestData.digest(content), length: UInt32(content.count)))
            datas.append(content)
            total += content.count
        }
        var seen = Set<ChunkDigest>()
        for content in datas {
            let d = ChunkTestData.digest(content)
            // The receiver asks once per digest: chunks the store has are not sent.
            if seen.insert(d).inserted && !store.contains(d) {
                frames += FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(content)))
            }
        }
        frames += FrameCodec.encode(.end(totalBytes: UInt64(total), chunks: UInt64(datas.count)))
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let staging = try store.staging(for: "\(vm).\(id)")
        var source = BytesSource(frames)
        let receipt = try ChunkReceiver(staging: staging, expectedSize: nil).receive(from: &source, answers: fds[1])
        try staging.commit()
        let backups = BackupStore(storage: storage)
        let partial = try backups.beginBackup(vm: vm, id: id)
        let bytes = receipt.index.serialized()
        try Files.replaceFile(partial + "/vda.index", contents: bytes)
        let image = Manifest.StoredImage(
            target: "vda", source: "/images/\(vm).raw", kind: .file, format: .raw, file: "vda.index",
            rawBytes: receipt.index.size, storedBytes: Int64(bytes.count), storedCksum: 0,
            storedSHA256: try FileDigest.sha256(ofFile: partial + "/vda.index").digest,
            chunks: Manifest.ChunkedImage(
                chunks: datas.count, zeroChunks: 0, newChunks: 0, newStoredBytes: 0, wireBytes: 0))
        let manifest = Manifest(
            vm: vm, id: id, host: "kvm1", mode: .cold, requestedMode: .cold, modeNote: nil, priorState: .running,
            compression: .lzop, started: id, finished: id, durationSeconds: 1, downtimeSeconds: 1, disks: [image],
            excluded: [], ramState: nil, domainXML: "<domain/>", keptOnHost: false, sequence: 1, store: .chunks)
        _ = try backups.commit(manifest, partial: partial)
        staging.release()
        return try #require(BackupCatalog(storage: storage).backups(of: vm).first { $0.id == id })
    }

    /// Sets every chunk file's time `seconds` into the past (as if the store had aged).
    func age(_ seconds: TimeInterval) {
        for path in ChunkTestData.storedChunks(store) {
            let full = store.root + "/" + path
            var times = [timespec](repeating: timespec(), count: 2)
            let t = Date().addingTimeInterval(-seconds).timeIntervalSince1970
            times[0] = timespec(tv_sec: Int(t), tv_nsec: 0)
            times[1] = times[0]
            _ = utimensat(AT_FDCWD, full, &times, 0)
        }
    }

    func content(_ n: Int) -> [UInt8] { ChunkTestData.text(chunk, seed: n) }

    @Test func removesOnlyChunksNoBackupUsesAndOnlyOldOnes() throws {
        let a = try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        try commitBackup("vm1", id: "20261102T000000Z", [content(1), content(3)])
        try commitBackup("vm2", id: "20261102T000000Z", [content(4), content(3)])
        #expect(ChunkTestData.storedChunks(store).count == 4)
        try FileManager.default.removeItem(atPath: a.path)  // rotation took the first backup
        // Young unreferenced chunks stay (a backup may be about to name them).
        var r = try ChunkCollector(storage: storage).collect()
        #expect(r.removed == 0 && r.keptYoung == 1 && r.referenced == 3 && r.indexes == 2, "\(r)")
        age(120)
        r = try ChunkCollector(storage: storage).collect()
        #expect(r.removed == 1 && r.chunks == 4, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: store.chunkPath(ChunkTestData.digest(content(2)))))
        for vm in ["vm1", "vm2"] {
            for backup in BackupCatalog(storage: storage).backups(of: vm) {
                #expect(BackupVerifier().verify(backup).ok)
            }
        }
    }

    @Test func aBackupInProgressKeepsEveryChunkItUses() throws {
        try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        let old = try #require(BackupCatalog(storage: storage).backups(of: "vm1").first)
        try FileManager.default.removeItem(atPath: old.path)  // rotated away: chunks 1 and 2 unreferenced
        age(3600)
        // A backup starts and finds chunk 1 in the store (it will name it), then the collector runs.
        let staging = try store.staging(for: "vm1.20261102T000000Z")
        let reused = ChunkTestData.digest(content(1) + [UInt8](repeating: 7, count: ChunkFormat.chunkSize - chunk))
        #expect(staging.has(reused))
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.runningWriters == 1)
        #expect(r.removed == 1, "chunk 2 goes, chunk 1 stays: \(r)")
        #expect(store.contains(reused))
        staging.discard()
        // Once no backup runs and the chunk has aged, it goes too.
        age(3600)
        #expect(try ChunkCollector(storage: storage).collect().removed == 1)
    }

    @Test func aDeadWritersStagingIsRemoved() throws {
        try Files.makeDirectory(store.root + "/.staging/vm9.20261101T000000Z", mode: 0o700)
        ChunkTestData.write(Array("x".utf8), to: store.root + "/.staging/vm9.20261101T000000Z/leftover")
        ChunkTestData.write([], to: store.root + "/.staging/vm9.20261101T000000Z.writer")
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.abandonedStagings == 1 && r.runningWriters == 0)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: store.root + "/.staging")) == [])
    }

    @Test func aRecoveryRemovesOnlyAnAbandonedStaging() throws {
        let live = try store.staging(for: "vm1.20261101T000000Z")
        #expect(!store.removeAbandonedStaging(job: "vm1.20261101T000000Z"), "a running job's staging stays")
        #expect(FileManager.default.fileExists(atPath: live.directory))
        // A dead worker: its registration file is there, nobody holds its lock.
        try Files.makeDirectory(store.root + "/.staging/vm2.20261101T000000Z", mode: 0o700)
        ChunkTestData.write([], to: store.root + "/.staging/vm2.20261101T000000Z.writer")
        #expect(store.removeAbandonedStaging(job: "vm2.20261101T000000Z"))
        #expect(!FileManager.default.fileExists(atPath: store.root + "/.staging/vm2.20261101T000000Z"))
        #expect(!FileManager.default.fileExists(atPath: store.root + "/.staging/vm2.20261101T000000Z.writer"))
        live.discard()
    }

    @Test func anUnreadableIndexStopsTheCollectionBeforeAnythingIsRemoved() throws {
        let b = try commitBackup("vm1", id: "20261101T000000Z", [content(1)])
        try commitBackup("vm2", id: "20261101T000000Z", [content(2)])
        try FileManager.default.removeItem(atPath: BackupCatalog(storage: storage).backups(of: "vm2")[0].path)
        age(3600)
        ChunkTestData.write(Array("garbage\n".utf8), to: b.path + "/vdb.index")
        #expect {
            try ChunkCollector(storage: storage).collect()
        } throws: { "\($0)".contains("vdb.index") && "\($0)".contains("before removing anything") }
        #expect(ChunkTestData.storedChunks(store).count == 2)
    }

    @Test func oneCollectionAtATime() throws {
        try commitBackup("vm1", id: "20261101T000000Z", [content(1)])
        let fd = open(store.root + "/.gc.lock", O_WRONLY | O_CREAT, 0o600)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX) == 0)
        #expect(throws: ChunkCollectorError.busy(lock: store.root + "/.gc.lock")) {
            try ChunkCollector(storage: storage).collect()
        }
    }

    /// `backup_vm gc` SIGKILLed at growing delays until one run is caught mid-sweep: after every kill,
    /// every committed backup still verifies.
    @Test func aCollectorKilledMidwayLeavesEveryBackupRestorable() throws {
        var keep: [[UInt8]] = []
        for i in 0..<20 { keep.append(content(1000 + i)) }
        try commitBackup("vm1", id: "20261102T000000Z", keep)
        // 3,000 unreferenced chunk files (any content: the collector removes them by name and age).
        for i in 0..<3000 {
            let d = ChunkTestData.digest(Array("garbage \(i)".utf8))
            let path = store.chunkPath(d)
            try Files.makeDirectory((path as NSString).deletingLastPathComponent, mode: 0o700)
            ChunkTestData.write([1], to: path)
        }
        age(3600)
        let config = dir.path + "/config"
        try Files.makeDirectory(config + "/backup_vm.d", mode: 0o700)
        ChunkTestData.write(
            Array("HostServers=kvm1\nBackupStorage=\(storage)\nStore=chunks\n".utf8),
            to: config + "/backup_vm.d/backup_vm.conf")
        ChunkTestData.write(Array("vm1 * 3\n".utf8), to: config + "/backup_vm.d/sheduler.conf")
        try Files.makeDirectory(config + "/vmsnapshot.d", mode: 0o700)
        ChunkTestData.write(
            Array("Mode=cold\nWorkPath=/var/lib/backup_vm\n".utf8), to: config + "/vmsnapshot.d/default")
        var caughtMidway = false
        for attempt in 0..<40 where !caughtMidway {
            let before = ChunkTestData.storedChunks(store).count
            let child = try ChildProcess(Paths.binary("backup_vm"), ["gc", "--config-dir", config])
            usleep(useconds_t(attempt * 2_000))
            kill(child.process.processIdentifier, SIGKILL)
            child.process.waitUntilExit()
            let after = ChunkTestData.storedChunks(store).count
            if after < before && after > 20 { caughtMidway = true }
            let backup = try #require(BackupCatalog(storage: storage).backups(of: "vm1").first)
            #expect(BackupVerifier().verify(backup).ok, "after a kill at attempt \(attempt)")
            if after == 20 { break }  // everything swept: nothing left to catch
        }
        #expect(caughtMidway, "no kill landed inside the sweep")
    }
}
