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

    /// Sets one chunk file's times `seconds` from now (negative: the past).
    func setTime(_ digest: ChunkDigest, _ seconds: TimeInterval) {
        var times = [timespec](repeating: timespec(), count: 2)
        times[0] = timespec(tv_sec: Int(Date().addingTimeInterval(seconds).timeIntervalSince1970), tv_nsec: 0)
        times[1] = times[0]
        _ = utimensat(AT_FDCWD, store.chunkPath(digest), &times, 0)
    }

    func full(_ n: Int) -> [UInt8] { content(n) + [UInt8](repeating: 7, count: ChunkFormat.chunkSize - chunk) }

    @Test func removesOnlyChunksNoBackupUses() throws {
        let a = try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        try commitBackup("vm1", id: "20261102T000000Z", [content(1), content(3)])
        try commitBackup("vm2", id: "20261102T000000Z", [content(4), content(3)])
        #expect(ChunkTestData.storedChunks(store).count == 4)
        try FileManager.default.removeItem(atPath: a.path)  // rotation took the first backup
        // No age is needed: nothing runs that could name the unreferenced chunk.
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.removed == 1 && r.chunks == 4 && r.referenced == 3 && r.indexes == 2, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: store.chunkPath(ChunkTestData.digest(content(2)))))
        #expect(!FileManager.default.fileExists(atPath: store.root + "/.trash"), "the trash is emptied")
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
        let reused = ChunkTestData.digest(full(1))
        #expect(try staging.has(reused))
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.runningWriters == 1)
        #expect(r.removed == 1, "chunk 2 goes, chunk 1 stays: \(r)")
        #expect(store.contains(reused))
        staging.discard()
        // Once no backup names it, it goes too.
        #expect(try ChunkCollector(storage: storage).collect().removed == 1)
    }

    /// Issue #19 item 17: a clock stepped back by an hour after a backup registered made the time it
    /// reused a chunk at older than the collector's cutoff (its registration less 60 s): the chunk went.
    @Test func aClockSteppedBackCannotMakeAChunkInUseLookOld() throws {
        try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        try FileManager.default.removeItem(
            atPath: try #require(BackupCatalog(storage: storage).backups(of: "vm1").first).path)
        let staging = try store.staging(for: "vm1.20261102T000000Z")
        let reused = ChunkTestData.digest(full(1))
        #expect(try staging.has(reused))
        // The reuse happened an hour "before" the registration: the clock went back in between.
        setTime(reused, -3600)
        let r = try ChunkCollector(storage: storage).collect()
        #expect(store.contains(reused), "a chunk a running backup named stays, whatever its time: \(r)")
        #expect(r.removed == 1)
        staging.discard()
    }

    /// A backup that finds a chunk in the store while the collector is about to remove it (after its
    /// mark): the chunk is put back, or the backup found it gone. Before, the collector's stat and
    /// unlink could bracket the backup's touch of the chunk: the chunk went, the backup named it.
    @Test func aChunkNamedDuringTheSweepIsKept() throws {
        try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        try FileManager.default.removeItem(
            atPath: try #require(BackupCatalog(storage: storage).backups(of: "vm1").first).path)
        let reused = ChunkTestData.digest(full(1))
        var staging: ChunkStaging?
        var found = false
        var collector = ChunkCollector(storage: storage)
        collector.beforeSweep = { unmarked in
            #expect(unmarked.contains(reused))
            staging = try self.store.staging(for: "vm1.20261102T000000Z")
            found = try staging!.has(reused)
        }
        let r = try collector.collect()
        #expect(found && store.contains(reused) && r.keptForWriters == 1 && r.removed == 1, "\(r)")
        staging?.discard()
    }

    /// Issue #19 item 17: a collector that looks at the registrations while a backup is registering
    /// (between its file's creation and its lock, before) took it for a dead writer's: it unlinked
    /// it, or its shared lock made the backup's registration fail. Now the file is published locked.
    @Test func aRegistrationBeingMadeIsNeverTakenForADeadOne() throws {
        try Files.makeDirectory(store.root + "/.staging", mode: 0o700)
        var seenWhileRegistering: (writers: [String], abandoned: Int)?
        WriterRegistration.beforePublishing = { _ in
            seenWhileRegistering = try? ChunkCollector(storage: self.storage).liveWriters()
        }
        defer { WriterRegistration.beforePublishing = nil }
        let staging = try store.staging(for: "vm1.20261102T000000Z")
        #expect(seenWhileRegistering?.abandoned == 0)
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.runningWriters == 1 && r.abandonedStagings == 0, "\(r)")
        #expect(FileManager.default.fileExists(atPath: store.root + "/.staging/vm1.20261102T000000Z.writer"))
        staging.discard()
    }

    /// A collection that died between moving chunks into its trash and removing them: the next one
    /// puts every one of them back (it cannot tell which a backup committed meanwhile names), and so
    /// does a read that misses a chunk.
    @Test func aDeadCollectionsTrashGoesBack() throws {
        let b = try commitBackup("vm1", id: "20261101T000000Z", [content(1), content(2)])
        let trash = ChunkTrash(store: store)
        let d1 = ChunkTestData.digest(full(1))
        #expect(try trash.take(d1))
        #expect(!store.contains(d1))
        #expect(BackupVerifier().verify(b).ok, "a read that misses the chunk puts the trash back")
        #expect(store.contains(d1))
        #expect(try trash.take(d1))
        let r = try ChunkCollector(storage: storage).collect()
        #expect(r.restoredFromTrash == 1 && r.removed == 0 && store.contains(d1), "\(r)")
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

    /// Issue #19 item 1: what the mark cannot read stops the collection before a removal. Before, an
    /// index that could not be opened or read, a VM or backup directory that could not be listed, and
    /// a failed listing of BackupStorage itself all counted as "no references".
    enum Unreadable: String, CaseIterable {
        case indexIsALink, indexTooLarge, indexReadFails, backupDirectoryListingFails, vmDirectoryListingFails
        case storageListingFails, vmDirectoryIsALink
    }

    @Test(arguments: Unreadable.allCases)
    func whatCannotBeReadStopsTheCollection(_ fault: Unreadable) throws {
        let b = try commitBackup("vm1", id: "20261101T000000Z", [content(1)])
        try commitBackup("vm2", id: "20261101T000000Z", [content(2)])
        try FileManager.default.removeItem(atPath: BackupCatalog(storage: storage).backups(of: "vm2")[0].path)
        let index = b.path + "/vda.index"
        let vmDir = storage + "/vm1"
        let eio = SystemError("read", path: "(injected)", errno: EIO)
        var collector = ChunkCollector(storage: storage)
        switch fault {
        case .indexIsALink:
            try FileManager.default.moveItem(atPath: index, toPath: dir.path + "/elsewhere.index")
            try FileManager.default.createSymbolicLink(
                atPath: index, withDestinationPath: dir.path + "/elsewhere.index")
        case .indexTooLarge:
            let fd = open(b.path + "/vdb.index", O_WRONLY | O_CREAT, 0o600)
            #expect(ftruncate(fd, off_t(1 << 30) + 1) == 0)  // sparse: costs nothing
            close(fd)
        case .indexReadFails:
            collector.indexWalk.read = { path, limit in
                if path == index { throw eio }
                return try Files.readRegularFileOrThrow(path, limit: limit)
            }
        case .backupDirectoryListingFails, .vmDirectoryListingFails, .storageListingFails:
            let failing = [.backupDirectoryListingFails: b.path, .vmDirectoryListingFails: vmDir][fault] ?? storage
            collector.indexWalk.list = { path in
                if path == failing { throw SystemError("opendir", path: path, errno: ESTALE) }
                return try Files.entries(path)
            }
        case .vmDirectoryIsALink:
            try FileManager.default.moveItem(atPath: vmDir, toPath: dir.path + "/vm1-elsewhere")
            try FileManager.default.createSymbolicLink(atPath: vmDir, withDestinationPath: dir.path + "/vm1-elsewhere")
        }
        #expect {
            try collector.collect()
        } throws: { "\($0)".contains("before removing anything") }
        #expect(ChunkTestData.storedChunks(store).count == 2, "nothing removed")
        #expect(!FileManager.default.fileExists(atPath: store.root + "/.trash"))
    }

    /// A backup directory that rotation renames while the mark reads it is not an error (it is gone,
    /// and a fresh listing agrees); one that is still listed but cannot be read is.
    @Test func aBackupRenamedDuringTheMarkIsNotAnError() throws {
        let b = try commitBackup("vm1", id: "20261101T000000Z", [content(1)])
        try commitBackup("vm1", id: "20261102T000000Z", [content(2)])
        var collector = ChunkCollector(storage: storage)
        collector.indexWalk.list = { path in
            if path == b.path {  // rotation gets there first
                try FileManager.default.moveItem(
                    atPath: b.path, toPath: self.storage + "/vm1/.20261101T000000Z.deleting")
            }
            return try Files.entries(path)
        }
        let r = try collector.collect()
        #expect(r.removed == 1 && r.indexes == 1, "\(r)")
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
        for attempt in 0..<30 where !caughtMidway {
            let before = ChunkTestData.storedChunks(store).count
            let child = try ChildProcess(Paths.binary("backup_vm"), ["gc", "--config-dir", config])
            // Into the sweep: the chunks are moving into the trash (then a little later each time).
            while child.process.isRunning && !Files.exists(store.root + "/.trash") { usleep(200) }
            usleep(useconds_t(attempt * 1_000))
            kill(child.process.processIdentifier, SIGKILL)
            child.process.waitUntilExit()
            let after = ChunkTestData.storedChunks(store).count
            let inTrash = ((try? Files.entries(store.root + "/.trash")) ?? []).count
            // Killed while chunks were out of the store (in the trash), or after some were removed.
            if inTrash > 0 || (after < before && after > 20) { caughtMidway = true }
            let backup = try #require(BackupCatalog(storage: storage).backups(of: "vm1").first)
            #expect(BackupVerifier().verify(backup).ok, "after a kill at attempt \(attempt)")
            if after == 20 && inTrash == 0 { break }  // everything swept: nothing left to catch
        }
        // A collection that runs to its end afterwards leaves exactly the backup's chunks.
        let r = try ChunkCollector(storage: storage).collect()
        #expect(ChunkTestData.storedChunks(store).count == 20, "\(r)")
        let backup = try #require(BackupCatalog(storage: storage).backups(of: "vm1").first)
        #expect(BackupVerifier().verify(backup).ok)
        #expect(caughtMidway, "no kill landed inside the sweep")
    }
}
