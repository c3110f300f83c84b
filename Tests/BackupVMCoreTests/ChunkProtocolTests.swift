import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// A hostile or broken helper: hand-made frame streams into the receiver. Each fails with a reason
/// and leaves no chunk in the store.
@Suite(.tags(.unit))
struct ChunkProtocolTests {
    let dir = TempDir("chunkproto")
    var store: ChunkStore { ChunkStore(storage: dir.path) }
    let chunk = ChunkTestData.chunk

    var hello: [UInt8] {
        FrameCodec.encode(.hello(version: ChunkFormat.protocolVersion, chunkSize: UInt32(ChunkFormat.chunkSize)))
    }

    /// Runs the receiver on `stream`; answers go into a pipe nobody reads (they are few bytes).
    func receive(_ stream: [UInt8], expectedSize: Int64? = nil) throws -> ChunkReceipt {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let staging = try store.staging(for: "t")
        var source = BytesSource(stream)
        do {
            let r = try ChunkReceiver(staging: staging, expectedSize: expectedSize).receive(
                from: &source, answers: fds[1])
            try staging.commit()
            staging.release()
            return r
        } catch {
            staging.discard()
            throw error
        }
    }

    func expectRefused(_ stream: [UInt8], expectedSize: Int64? = nil, _ check: (ChunkTransferError) -> Bool) {
        #expect {
            _ = try receive(stream, expectedSize: expectedSize)
        } throws: { error in
            guard let e = error as? ChunkTransferError else { return false }
            return check(e)
        }
        #expect(ChunkTestData.storedChunks(store).isEmpty)
    }

    @Test func aWellFormedStreamIsAccepted() throws {
        let content = ChunkTestData.text(chunk, seed: 1)
        let d = ChunkTestData.digest(content)
        let stream =
            hello + FrameCodec.encode(.digest(d, length: UInt32(chunk))) + FrameCodec.encode(.zero(length: 10))
            + FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(content)))
            + FrameCodec.encode(.end(totalBytes: UInt64(chunk + 10), chunks: 2))
        let r = try receive(stream)
        #expect(r.index.entries == [.chunk(d), .zero])
        #expect(r.wireBytes == Int64(stream.count))
        #expect(ChunkTestData.storedChunks(store).count == 1)
    }

    @Test func aChunkWhoseContentDoesNotMatchItsDigestIsRefused() {
        let claimed = ChunkTestData.text(chunk, seed: 1)
        let sent = ChunkTestData.text(chunk, seed: 2)
        let d = ChunkTestData.digest(claimed)
        let stream =
            hello + FrameCodec.encode(.digest(d, length: UInt32(chunk)))
            + FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(sent)))
            + FrameCodec.encode(.end(totalBytes: UInt64(chunk), chunks: 1))
        expectRefused(stream) {
            guard case .digestMismatch(0, 0, d) = $0 else { return false }
            return "\($0)".contains("does not match its digest")
        }
    }

    @Test func aFrameThatDecompressesToAnotherLengthIsRefused() {
        let content = ChunkTestData.text(chunk, seed: 1)
        let d = ChunkTestData.digest(content)
        let stream =
            hello + FrameCodec.encode(.digest(d, length: UInt32(chunk)))
            + FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(Array(content.prefix(100)))))
        expectRefused(stream) { if case .badFrame(0, 0, _) = $0 { return true } else { return false } }
    }

    @Test func aTruncatedFrameIsRefused() {
        let content = ChunkTestData.random(chunk, seed: 4)
        let d = ChunkTestData.digest(content)
        let whole = FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(content)))
        let stream = hello + FrameCodec.encode(.digest(d, length: UInt32(chunk))) + whole.prefix(whole.count / 2)
        expectRefused(stream) {
            guard case .wire(.truncated) = $0 else { return false }
            return "\($0)".contains("ended inside a frame's payload")
        }
    }

    @Test func garbageIsRefused() {
        expectRefused(ChunkTestData.random(4096, seed: 5)) {
            if case .wire = $0 { return true }
            if case .protocolViolation(1, _) = $0 { return true }
            return false
        }
        expectRefused(hello + [0x44, 0xff, 0xff, 0xff, 0xff]) {
            if case .wire(.payloadTooLong) = $0 { return true } else { return false }
        }
        expectRefused(hello + [0x51, 0, 0, 0, 0]) {
            if case .wire(.unknownTag(0x51)) = $0 { return true } else { return false }
        }
    }

    @Test func aChunkNobodyAskedForIsRefused() {
        let content = ChunkTestData.text(chunk, seed: 1)
        let d = ChunkTestData.digest(content)
        expectRefused(hello + FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(content)))) {
            "\($0)".contains("was not asked for")
        }
    }

    @Test func countsAndSizesMustAddUp() {
        let z = FrameCodec.encode(.zero(length: UInt32(chunk)))
        expectRefused(hello + z + FrameCodec.encode(.end(totalBytes: 5, chunks: 1))) {
            "\($0)".contains("end frame says")
        }
        expectRefused(hello + z + FrameCodec.encode(.end(totalBytes: UInt64(chunk), chunks: 1)), expectedSize: 7) {
            "\($0)".contains("frame 2: more than the disk's 7 bytes")
        }
        let longer = Int64(chunk) + 7
        expectRefused(hello + z + FrameCodec.encode(.end(totalBytes: UInt64(chunk), chunks: 1)), expectedSize: longer) {
            $0 == .sizeMismatch(expected: longer, sent: Int64(chunk))
        }
        expectRefused(hello + FrameCodec.encode(.zero(length: 10)) + z) { "\($0)".contains("after the short last one") }
        expectRefused(hello + FrameCodec.encode(.zero(length: UInt32(chunk + 1)))) { "\($0)".contains("a chunk of") }
        expectRefused(hello + z) { "\($0)".contains("ended before the end frame") }
        expectRefused(hello + FrameCodec.encode(.end(totalBytes: 0, chunks: 0)) + z) {
            "\($0)".contains("after the end frame")
        }
        expectRefused(FrameCodec.encode(.hello(version: 9, chunkSize: 4096))) { "\($0)".contains("protocol 9") }
        expectRefused(z) { "\($0)".contains("expected the hello frame first") }
    }

    @Test func theHelpersOwnFailureIsReported() {
        expectRefused(hello + FrameCodec.encode(.failure("reading the disk failed (errno 5)"))) {
            $0 == .helper("reading the disk failed (errno 5)")
        }
    }

    @Test func aChunkAlreadyInTheStoreIsNotAskedFor() throws {
        let content = ChunkTestData.text(chunk, seed: 1)
        let d = ChunkTestData.digest(content)
        let stream =
            hello + FrameCodec.encode(.digest(d, length: UInt32(chunk)))
            + FrameCodec.encode(.chunk(d, frame: ChunkTestData.zstd(content)))
            + FrameCodec.encode(.end(totalBytes: UInt64(chunk), chunks: 1))
        _ = try receive(stream)
        let again =
            hello + FrameCodec.encode(.digest(d, length: UInt32(chunk)))
            + FrameCodec.encode(.end(totalBytes: UInt64(chunk), chunks: 1))
        let r = try receive(again)
        #expect(r.knownChunks == 1 && r.newChunks == 0)
    }
}

@Suite(.tags(.unit))
struct ChunkIndexTests {
    let d1 = ChunkTestData.digest(Array("one".utf8))
    let d2 = ChunkTestData.digest(Array("two".utf8))

    @Test func roundTrip() throws {
        let index = ChunkIndex(size: Int64(ChunkFormat.chunkSize * 2 + 5), entries: [.chunk(d1), .zero, .chunk(d2)])
        let parsed = try ChunkIndex.parse(index.serialized(), file: "vda.index")
        #expect(parsed == index)
        #expect(parsed.length(of: 2) == 5)
        #expect(parsed.digests == [d1, d2])
    }

    @Test func aDamagedIndexIsRefusedNamingTheLine() {
        var bytes = ChunkIndex(size: 10, entries: [.chunk(d1)]).serialized()
        // One hex digit of the chunk line (line 5) changes: the checksum on line 6 no longer matches.
        let i = bytes.lastIndex(of: UInt8(ascii: "s"))! - 10
        bytes[i] = bytes[i] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(
            throws: ChunkIndexError(
                file: "vda.index", line: 6, reason: "the index's checksum does not match its content (damaged)")
        ) {
            try ChunkIndex.parse(bytes, file: "vda.index")
        }
    }

    @Test func linesAreChecked() {
        func reindex(_ text: String) -> [UInt8] {
            let body = Array(text.utf8)
            return body + Array("sha256 \(body.withUnsafeBytes { ChunkDigest(of: $0) }.hex)\n".utf8)
        }
        let head = "bvm-chunk-index 1\nsize 10\nchunk-size \(ChunkFormat.chunkSize)\nchunks 1\n"
        #expect(throws: ChunkIndexError(file: "f", line: 5, reason: "expected 64 lower-case hex digits or `zero`")) {
            try ChunkIndex.parse(reindex(head + "XYZ\n"), file: "f")
        }
        #expect(throws: ChunkIndexError(file: "f", line: 4, reason: "says 1 chunks, lists 2")) {
            try ChunkIndex.parse(reindex(head + "zero\nzero\n"), file: "f")
        }
        #expect(throws: ChunkIndexError(file: "f", line: 4, reason: "2 chunks for 10 bytes (expected 1)")) {
            try ChunkIndex.parse(
                reindex(head.replacingOccurrences(of: "chunks 1", with: "chunks 2") + "zero\nzero\n"), file: "f")
        }
        #expect(throws: ChunkIndexError.self) { try ChunkIndex.parse(Array("hello".utf8), file: "f") }
    }
}
