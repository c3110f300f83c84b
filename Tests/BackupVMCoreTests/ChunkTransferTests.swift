import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// The chunked transfer with the real helper binary on real pipes: what is sent, what is stored,
/// what comes back.
@Suite(.tags(.spool))
struct ChunkTransferTests {
    let dir = TempDir("chunks")
    var store: ChunkStore { ChunkStore(storage: dir.path + "/storage") }
    let chunk = ChunkTestData.chunk

    func send(_ argv: [String], job: String, size: Int64?) throws -> ChunkReceipt {
        let staging = try store.staging(for: job)
        do {
            let receipt = try ChunkChannel.receive(
                argv, staging: staging, expectedSize: size, limits: CommandLimits(stall: 20)
            ).receipt
            try staging.commit()
            staging.release()
            return receipt
        } catch {
            staging.discard()
            throw error
        }
    }

    func sendFile(_ path: String, job: String) throws -> ChunkReceipt {
        let size = Int64((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        return try send([Paths.binary("bvm-chunk-helper"), "send", "--source", path], job: job, size: size)
    }

    /// 10 full chunks and a short tail: random, zero, a repeat of chunk 0, text.
    func disk() -> [UInt8] {
        var d: [UInt8] = []
        for i in 0..<3 { d += ChunkTestData.random(chunk, seed: UInt64(i + 1)) }
        d += [UInt8](repeating: 0, count: 2 * chunk)
        d += Array(d[0..<chunk])
        for i in 6..<10 { d += ChunkTestData.text(chunk, seed: i) }
        d += ChunkTestData.random(1000, seed: 99)
        return d
    }

    @Test func firstBackupStoresEachDistinctChunkOnceAndNoZeros() throws {
        let image = disk()
        let path = dir.path + "/disk.raw"
        ChunkTestData.write(image, to: path)
        let r = try sendFile(path, job: "j1")
        #expect(r.index.entries.count == 11)
        #expect(r.index.size == Int64(image.count))
        #expect(r.zeroChunks == 2)
        #expect(r.knownChunks == 1, "chunk 5 repeats chunk 0 within the same disk")
        #expect(r.newChunks == 8)
        #expect(ChunkTestData.storedChunks(store).count == 8)
        #expect(try ChunkTestData.reassemble(r.index, store: store) == image)
        #expect(!FileManager.default.fileExists(atPath: store.root + "/.staging/j1"), "staging is gone after commit")
    }

    @Test func secondBackupSendsOnlyTheChangedChunk() throws {
        var image = disk()
        let path = dir.path + "/disk.raw"
        ChunkTestData.write(image, to: path)
        let first = try sendFile(path, job: "j1")
        image[7 * chunk + 12345] ^= 0xff
        ChunkTestData.write(image, to: path)
        let second = try sendFile(path, job: "j2")
        #expect(second.newChunks == 1)
        #expect(second.knownChunks == 8)
        // The changed chunk is text (compresses well); the rest is digests: a few hundred bytes.
        #expect(second.wireBytes < first.wireBytes / 5, "first \(first.wireBytes), second \(second.wireBytes)")
        #expect(ChunkTestData.storedChunks(store).count == 9)
        #expect(try ChunkTestData.reassemble(second.index, store: store) == image)
        #expect(
            try ChunkTestData.reassemble(first.index, store: store) != image, "the first backup keeps its own content")
    }

    /// The shape a job runs on the hypervisor: the disk arrives on a pipe (dd, nbdcopy) as fd 3 and
    /// the server's answers on stdin.
    @Test func diskOnAPipeAnswersOnStdin() throws {
        let image = disk()
        let path = dir.path + "/disk.raw"
        ChunkTestData.write(image, to: path)
        let helper = Paths.binary("bvm-chunk-helper")
        let script = "exec 4<&0; cat \"$1\" </dev/null | \"$0\" send --source-fd 3 3<&0 0<&4"
        let r = try send(["sh", "-c", script, helper, path], job: "p", size: Int64(image.count))
        #expect(try ChunkTestData.reassemble(r.index, store: store) == image)
    }

    @Test func aSourceThatStopsIsEndedByTheStallLimit() throws {
        let helper = Paths.binary("bvm-chunk-helper")
        let script = "exec 4<&0; sleep 30 </dev/null | \"$0\" send --source-fd 3 3<&0 0<&4"
        let staging = try store.staging(for: "stall")
        defer { staging.discard() }
        let started = Date()
        #expect {
            try ChunkChannel.receive(
                ["sh", "-c", script, helper], staging: staging, expectedSize: nil, limits: CommandLimits(stall: 1))
        } throws: { error in
            guard case .cut(_, .stalled(1), _)? = error as? ProcessError else { return false }
            return true
        }
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(ChunkTestData.storedChunks(store).isEmpty)
    }

    /// A sender that keeps its connection open and stops reading the answers (its stdin pipe full: the
    /// same digest again and again is answered "known" each time) was waited for forever: the answer's
    /// write blocked, and the stall limit is watched only while reading. Now it is cut like a stall.
    @Test(.timeLimit(.minutes(1)))
    func aSenderThatStopsReadingTheAnswersIsCutOff() throws {
        let script = """
            import struct, sys, time
            out = sys.stdout.buffer
            out.write(b"H" + struct.pack(">I", 5) + bytes([1]) + struct.pack(">I", 4194304))
            d = b"D" + struct.pack(">I", 36) + bytes(32) + struct.pack(">I", 4194304)
            out.write(d * 300000); out.flush()
            time.sleep(60)
            """
        let staging = try store.staging(for: "deaf")
        defer { staging.discard() }
        let started = Date()
        #expect {
            try ChunkChannel.receive(
                ["python3", "-c", script], staging: staging, expectedSize: 1 << 40, limits: CommandLimits(stall: 2))
        } throws: { error in
            guard case .cut(_, .stalled(2), _)? = error as? ProcessError else { return false }
            return true
        }
        #expect(Date().timeIntervalSince(started) < 30)
    }

    /// A stream that goes past the size the server learned before it started is refused at that frame.
    @Test func aStreamPastTheDeclaredSizeIsRefusedAtOnce() throws {
        var frames = FrameCodec.encode(.hello(version: ChunkFormat.protocolVersion, chunkSize: UInt32(chunk)))
        for _ in 0..<100_000 { frames += FrameCodec.encode(.zero(length: UInt32(chunk))) }
        let staging = try store.staging(for: "past")
        defer { staging.discard() }
        var source = BytesSource(frames)
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        #expect {
            try ChunkReceiver(staging: staging, expectedSize: Int64(3 * chunk)).receive(from: &source, answers: fds[1])
        } throws: { error in
            guard case ChunkTransferError.protocolViolation(let frame, let why) = error else { return false }
            return frame == 5 && why.contains("more than the disk's")
        }
    }

    @Test func anUnreadableDiskFailsNamingIt() throws {
        let staging = try store.staging(for: "missing")
        defer { staging.discard() }
        #expect {
            try ChunkChannel.receive(
                [Paths.binary("bvm-chunk-helper"), "send", "--source", dir.path + "/no-such-disk"], staging: staging,
                expectedSize: nil, limits: CommandLimits(stall: 20))
        } throws: { error in
            "\(error)".contains("cannot open") && "\(error)".contains("no-such-disk")
        }
    }

    @Test func aDiskOfAnotherSizeThanExpectedIsRefused() throws {
        let path = dir.path + "/small.raw"
        ChunkTestData.write(ChunkTestData.random(5000, seed: 3), to: path)
        #expect(throws: ChunkChannelError.self) {
            try send([Paths.binary("bvm-chunk-helper"), "send", "--source", path], job: "s", size: 6000)
        }
        #expect(ChunkTestData.storedChunks(store).isEmpty)
    }
}

/// The documented way to restore without the tool: scripts/restore-chunks, which docs/chunk-store.md
/// shows verbatim, on a store the real helper filled (zero chunks, a repeated chunk, a short tail).
@Suite(.tags(.spool))
struct ChunkRestoreScriptTests {
    let dir = TempDir("chunkscript")

    @Test func theDocumentedScriptIsTheShippedOne() throws {
        let doc = try String(contentsOfFile: Paths.packageRoot + "/docs/chunk-store.md", encoding: .utf8)
        let script = try String(contentsOfFile: Paths.packageRoot + "/scripts/restore-chunks", encoding: .utf8)
        let block = try #require(
            doc.components(separatedBy: "<!-- restore-chunks: begin").last?
                .components(separatedBy: "<!-- restore-chunks: end -->").first)
        #expect(block.contains("```bash\n" + script + "```"))
    }

    @Test func itRestoresADiskBitForBitAndRefusesADamagedIndex() throws {
        let chunk = ChunkFormat.chunkSize
        var image = ChunkTestData.random(chunk, seed: 7) + [UInt8](repeating: 0, count: chunk)
        image += Array(image[0..<chunk]) + ChunkTestData.text(chunk / 3, seed: 8)
        let disk = dir.path + "/disk.raw"
        ChunkTestData.write(image, to: disk)
        let store = ChunkStore(storage: dir.path + "/storage")
        let staging = try store.staging(for: "vm.id")
        let r = try ChunkChannel.receive(
            [Paths.binary("bvm-chunk-helper"), "send", "--source", disk], staging: staging,
            expectedSize: Int64(image.count), limits: CommandLimits(stall: 20)
        ).receipt
        try staging.commit()
        staging.release()
        #expect(r.zeroChunks == 1 && r.knownChunks == 1)
        let index = dir.path + "/storage/vm/20261128T000000Z/vda.index"
        try Files.makeDirectory((index as NSString).deletingLastPathComponent, mode: 0o700)
        ChunkTestData.write(r.index.serialized(), to: index)
        let script = Paths.packageRoot + "/scripts/restore-chunks"
        let out = dir.path + "/restored.raw"
        let ok = try runTool("/bin/bash", ["-c", "'\(script)' '\(index)' > '\(out)'"])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(FileManager.default.contents(atPath: out) == Data(image))
        // A chunk gone: the script fails (not a short disk with exit 0).
        let gone = store.chunkPath(ChunkTestData.digest(Array(image[0..<chunk])))
        try FileManager.default.removeItem(atPath: gone)
        #expect(try runTool("/bin/bash", ["-c", "'\(script)' '\(index)' > /dev/null"]).status != 0)
        // A damaged index: refused, naming it.
        var bytes = try #require(FileManager.default.contents(atPath: index))
        bytes[30] ^= 1
        try bytes.write(to: URL(fileURLWithPath: index))
        let bad = try runTool("/bin/bash", ["-c", "'\(script)' '\(index)' > /dev/null"])
        #expect(bad.status == 1 && bad.err.contains("damaged"))
    }
}
