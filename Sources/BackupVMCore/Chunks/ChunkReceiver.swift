import CChunkCodec
import ChunkWire
import Foundation

/// What one disk's chunked transfer did.
public struct ChunkReceipt: Sendable, Equatable {
    public var index: ChunkIndex
    /// Bytes read from the helper's stream (frames and all): what crossed the wire.
    public var wireBytes: Int64
    /// Chunks the store lacked, now staged, and their compressed size.
    public var newChunks: Int
    public var newStoredBytes: Int64
    /// Chunks the store (or this stream, earlier) already had, and all-zero chunks.
    public var knownChunks: Int
    public var zeroChunks: Int
}

/// Why a chunked transfer was refused. Nothing of it is in the store: new chunks wait in the job's
/// staging directory until the whole stream has checked.
public enum ChunkTransferError: Error, CustomStringConvertible, Equatable {
    case helper(String)
    case wire(WireError)
    case protocolViolation(frame: Int, String)
    case digestMismatch(chunk: Int, offset: Int64, digest: ChunkDigest)
    case badFrame(chunk: Int, offset: Int64, expectedBytes: Int)
    case sizeMismatch(expected: Int64, sent: Int64)
    case answer(errno: Int32)

    public var description: String {
        switch self {
        case .helper(let message): return "the hypervisor's helper failed: \(ReasonText.oneLine(message))"
        case .wire(let e): return "chunk stream from the helper: \(e)"
        case .protocolViolation(let frame, let why): return "chunk stream from the helper, frame \(frame): \(why)"
        case .digestMismatch(let chunk, let offset, let digest):
            return
                "chunk \(chunk) (disk offset \(offset)) does not match its digest \(digest.hex): refused, nothing stored"
        case .badFrame(let chunk, let offset, let bytes):
            return
                "chunk \(chunk) (disk offset \(offset)) is not a zstd frame of \(bytes) bytes: refused, nothing stored"
        case .sizeMismatch(let expected, let sent):
            return "the helper sent \(sent) bytes of a disk of \(expected) bytes"
        case .answer(let e): return "answering the helper failed (errno \(e))"
        }
    }
}

/// The server side of the chunk protocol (docs/chunk-store.md): reads the helper's frames, answers
/// each digest with `need` or `known`, checks every chunk that arrives against its digest before it is
/// staged, and builds the disk's index. It trusts nothing from the stream: order, lengths, counts and
/// content are all checked; the first fault ends the transfer with a reason.
public struct ChunkReceiver {
    let staging: ChunkStaging
    let expectedSize: Int64?

    public init(staging: ChunkStaging, expectedSize: Int64?) {
        self.staging = staging
        self.expectedSize = expectedSize
    }

    /// The answers written to a blocking descriptor (tests, pipes nobody can stop reading).
    public func receive<S: ByteSource>(from source: inout S, answers: Int32) throws -> ChunkReceipt {
        var sink = BlockingAnswers(fd: answers)
        return try receive(from: &source, answers: &sink)
    }

    public func receive<S: ByteSource, A: AnswerSink>(from source: inout S, answers: inout A) throws -> ChunkReceipt {
        let session = ReceiveSession(
            input: CountingSource(base: source), answers: answers, staging: staging, expectedSize: expectedSize)
        defer {
            source = session.input.base
            answers = session.answers
        }
        return try session.run()
    }

    /// Chunks asked for and not yet sent that a helper may have: its window is 4 (docs/chunk-store.md).
    /// More means it does not send what it is asked for, and the list would only grow.
    static let maxOutstanding = 64
}

/// Where the receiver's answers (`need`, `known`) go.
public protocol AnswerSink {
    mutating func send(_ answer: UInt8) throws
}

/// Answers written to a descriptor, waiting as long as it takes.
public struct BlockingAnswers: AnswerSink {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public mutating func send(_ answer: UInt8) throws {
        var byte = answer
        try withUnsafeBytes(of: &byte) { try WireIO.writeAll(fd, $0) }
    }
}

/// One transfer's state: the frames so far, what was asked for and not yet sent, the index growing.
/// Every structure it keeps is bounded before the stream starts: by the disk's size, which the
/// caller learned before (`expectedSize`: the stream is refused the moment it goes past it), and by
/// the helper's window of chunks asked for and not yet sent (`maxOutstanding`). Whatever a helper sends
/// (millions of 9-byte zero frames, digests it never sends), the server's memory stays bounded.
private final class ReceiveSession<S: ByteSource, A: AnswerSink> {
    var input: CountingSource<S>
    var answers: A
    let staging: ChunkStaging
    let expectedSize: Int64?
    let chunkSize = ChunkFormat.chunkSize

    var frameNumber = 0
    /// The last frame's payload (reused); a chunk frame's content is read from here.
    var payload: [UInt8] = []
    var payloadLength = 0
    var entries: [ChunkIndex.Entry] = []
    var total: Int64 = 0
    var sawShort = false
    /// Chunks asked for, in order; `head` is the next one to arrive.
    var requested: [(digest: ChunkDigest, length: Int, chunk: Int)] = []
    var head = 0
    var inStream = Set<ChunkDigest>()
    var receipt = ChunkReceipt(
        index: ChunkIndex(size: 0, entries: []), wireBytes: 0, newChunks: 0, newStoredBytes: 0, knownChunks: 0,
        zeroChunks: 0)
    let verifier: ChunkVerifier

    init(input: CountingSource<S>, answers: A, staging: ChunkStaging, expectedSize: Int64?) {
        self.input = input
        self.answers = answers
        self.staging = staging
        self.expectedSize = expectedSize
        verifier = ChunkVerifier(staging: staging)
    }

    /// The stream, frame by frame; whatever ends it, the verifier has finished before this returns
    /// (nothing is written into the staging directory after), and a chunk it found bad is the reason
    /// told (it came before whatever broke the stream after it).
    func run() throws -> ChunkReceipt {
        do {
            return try frames()
        } catch {
            if let failure = verifier.finish() { throw failure }
            throw error
        }
    }

    private func frames() throws -> ChunkReceipt {
        try hello()
        while true {
            guard let frame = try next() else { throw violation("the stream ended before the end frame") }
            switch frame {
            case .digest(let digest, let length): try digestFrame(digest, length)
            case .zero(let length):
                try accept(length)
                entries.append(.zero)
                receipt.zeroChunks += 1
            case .chunk(let digest, _): try chunkFrame(digest)
            case .end(let totalBytes, let chunks):
                try endFrame(totalBytes, chunks)
                return receipt
            case .failure(let message): throw ChunkTransferError.helper(message)
            case .hello: throw violation("a second hello frame")
            }
        }
    }

    /// The next frame; a chunk frame's content stays in `payload` (`.chunk` carries no bytes).
    func next() throws -> HelperFrame? {
        frameNumber += 1
        do {
            guard let (tag, length) = try FrameCodec.readRaw(from: &input, into: &payload) else { return nil }
            payloadLength = length
            guard tag == .chunk else { return try FrameCodec.decode(tag, payload[0..<length]) }
            guard length > ChunkDigest.byteCount else {
                throw WireError.badPayload(tag: tag.rawValue, length: length, expected: "a digest and a zstd frame")
            }
            return .chunk(ChunkDigest(bytes: Array(payload[0..<ChunkDigest.byteCount]))!, frame: [])
        } catch let e as WireError { throw ChunkTransferError.wire(e) }
    }

    func violation(_ why: String) -> ChunkTransferError { .protocolViolation(frame: frameNumber, why) }

    func hello() throws {
        guard case .hello(let version, let size)? = try next() else {
            throw violation("expected the hello frame first")
        }
        guard version == ChunkFormat.protocolVersion, Int(size) == chunkSize else {
            throw violation(
                "helper speaks protocol \(version) with \(size)-byte chunks; this server: "
                    + "\(ChunkFormat.protocolVersion), \(chunkSize) (copy the matching helper)")
        }
    }

    /// A chunk's length: full, but for the last.
    func accept(_ length: UInt32) throws {
        guard length > 0, Int(length) <= chunkSize else {
            throw violation("a chunk of \(length) bytes (expected 1...\(chunkSize))")
        }
        guard !sawShort else { throw violation("a chunk after the short last one") }
        if let expectedSize, total + Int64(length) > expectedSize {
            throw violation(
                "more than the disk's \(expectedSize) bytes (refused at once: \(entries.count) chunks so far)")
        }
        if Int(length) < chunkSize { sawShort = true }
        total += Int64(length)
        staging.progress.add(Int(length))
    }

    func answer(_ a: ServerAnswer) throws {
        do { try answers.send(a.rawValue) } catch WireError.io(_, let e) { throw ChunkTransferError.answer(errno: e) }
    }

    func digestFrame(_ digest: ChunkDigest, _ length: UInt32) throws {
        try accept(length)
        entries.append(.chunk(digest))
        if try inStream.contains(digest) || staging.has(digest) {
            receipt.knownChunks += 1
            try answer(.known)
        } else {
            guard requested.count - head < ChunkReceiver.maxOutstanding else {
                throw violation("more than \(ChunkReceiver.maxOutstanding) chunks asked for and not sent")
            }
            inStream.insert(digest)
            if head > 1024 {  // what arrived is forgotten: the list holds only what is awaited
                requested.removeFirst(head)
                head = 0
            }
            requested.append((digest, Int(length), entries.count - 1))
            try answer(.need)
        }
    }

    /// The next chunk asked for: one zstd frame of exactly its length whose content has its digest.
    func chunkFrame(_ digest: ChunkDigest) throws {
        guard head < requested.count else { throw violation("chunk \(digest.hex) was not asked for") }
        let wanted = requested[head]
        guard digest == wanted.digest else {
            throw violation("chunk \(digest.hex) sent where \(wanted.digest.hex) was next")
        }
        let frame = ChunkDigest.byteCount..<payloadLength
        try verifier.submit(
            ChunkVerifier.Work(
                digest: digest, frame: Array(payload[frame]), length: wanted.length, chunk: wanted.chunk,
                offset: Int64(wanted.chunk) * Int64(chunkSize)))
        receipt.newChunks += 1
        receipt.newStoredBytes += Int64(frame.count)
        head += 1
    }

    func endFrame(_ totalBytes: UInt64, _ chunks: UInt64) throws {
        guard head == requested.count else {
            throw violation("ended with \(requested.count - head) chunks asked for and not sent")
        }
        guard totalBytes == UInt64(total), chunks == UInt64(entries.count) else {
            throw violation("end frame says \(totalBytes) bytes in \(chunks) chunks; sent \(total) in \(entries.count)")
        }
        if let expectedSize, expectedSize != total {
            throw ChunkTransferError.sizeMismatch(expected: expectedSize, sent: total)
        }
        guard try next() == nil else { throw violation("data after the end frame") }
        if let failure = verifier.finish() { throw failure }
        receipt.index = ChunkIndex(size: total, chunkSize: chunkSize, entries: entries)
        receipt.wireBytes = input.count
    }
}

/// Counts the bytes read through it.
struct CountingSource<Base: ByteSource>: ByteSource {
    var base: Base
    var count: Int64 = 0

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try base.read(into: buffer)
        count += Int64(n)
        return n
    }
}
