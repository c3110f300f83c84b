/// One frame from the helper to the server: a type byte, a 4-byte big-endian payload length, the
/// payload. The server answers each `digest` frame with one byte, `need` or `known`.
public enum HelperFrame: Equatable, Sendable {
    /// First frame: protocol version and chunk size.
    case hello(version: UInt8, chunkSize: UInt32)
    /// The next chunk of the disk has this content digest and length; is it wanted?
    case digest(ChunkDigest, length: UInt32)
    /// The next chunk of the disk is all zeros (never sent, never stored).
    case zero(length: UInt32)
    /// A chunk the server asked for: its digest and its content as one zstd frame.
    case chunk(ChunkDigest, frame: [UInt8])
    /// The disk is through: total bytes and chunks sent (digest and zero frames).
    case end(totalBytes: UInt64, chunks: UInt64)
    /// The helper could not go on (e.g. the disk could not be read); the message says why.
    case failure(String)

    public enum Tag: UInt8 {
        case hello = 0x48  // H
        case digest = 0x44  // D
        case zero = 0x5a  // Z
        case chunk = 0x43  // C
        case end = 0x45  // E
        case failure = 0x58  // X
    }
}

/// The server's one-byte answer to a digest frame.
public enum ServerAnswer: UInt8, Sendable {
    case need = 0x4e  // N
    case known = 0x4b  // K
}

public enum FrameCodec {
    public static let headerSize = 5

    public static func header(_ tag: HelperFrame.Tag, length: Int) -> [UInt8] {
        [tag.rawValue] + bigEndian(UInt32(length))
    }

    /// The whole frame as bytes (for everything but chunk frames, which the helper writes in two parts).
    public static func encode(_ frame: HelperFrame) -> [UInt8] {
        let (tag, payload): (HelperFrame.Tag, [UInt8])
        switch frame {
        case .hello(let version, let size): (tag, payload) = (.hello, [version] + bigEndian(size))
        case .digest(let d, let length): (tag, payload) = (.digest, d.bytes + bigEndian(length))
        case .zero(let length): (tag, payload) = (.zero, bigEndian(length))
        case .chunk(let d, let frame): (tag, payload) = (.chunk, d.bytes + frame)
        case .end(let total, let chunks): (tag, payload) = (.end, bigEndian(total) + bigEndian(chunks))
        case .failure(let message): (tag, payload) = (.failure, Array(message.utf8.prefix(4096)))
        }
        return header(tag, length: payload.count) + payload
    }

    /// Reads one frame; nil at a clean end of stream (before a header's first byte). A frame cut
    /// short, an unknown type, an oversized or malformed payload is an error naming what arrived.
    public static func read<S: ByteSource>(from source: inout S, maxPayload: Int = ChunkFormat.maxPayload) throws
        -> HelperFrame?
    {
        var payload: [UInt8] = []
        guard let (tag, length) = try readRaw(from: &source, into: &payload, maxPayload: maxPayload) else { return nil }
        return try decode(tag, payload[0..<length])
    }

    /// Reads one frame into `payload` (reused across frames and grown as needed, so a stream of
    /// 4 MiB chunks costs no allocation per chunk); returns its type and payload length.
    public static func readRaw<S: ByteSource>(
        from source: inout S, into payload: inout [UInt8], maxPayload: Int = ChunkFormat.maxPayload
    ) throws -> (HelperFrame.Tag, Int)? {
        var head = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
        let got = try withUnsafeMutableBytes(of: &head) { try WireIO.readFully(&source, into: $0) }
        if got == 0 { return nil }
        guard got == headerSize else {
            throw WireError.truncated(expected: headerSize, got: got, what: "a frame header")
        }
        guard let tag = HelperFrame.Tag(rawValue: head.0) else { throw WireError.unknownTag(head.0) }
        let length = Int(UInt32(head.1) << 24 | UInt32(head.2) << 16 | UInt32(head.3) << 8 | UInt32(head.4))
        guard length <= maxPayload else {
            throw WireError.payloadTooLong(tag: tag.rawValue, length: length, limit: maxPayload)
        }
        if payload.count < length { payload = [UInt8](repeating: 0, count: max(length, payload.count * 2)) }
        let n = try payload.withUnsafeMutableBytes {
            try WireIO.readFully(&source, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<length]))
        }
        guard n == length else { throw WireError.truncated(expected: length, got: n, what: "a frame's payload") }
        return (tag, length)
    }

    public static func decode(_ tag: HelperFrame.Tag, _ p: ArraySlice<UInt8>) throws -> HelperFrame {
        let p = Array(p)
        func bad(_ expected: String) -> WireError {
            .badPayload(tag: tag.rawValue, length: p.count, expected: expected)
        }
        switch tag {
        case .hello:
            guard p.count == 5 else { throw bad("5 bytes (version, chunk size)") }
            return .hello(version: p[0], chunkSize: UInt32(p[1...4]))
        case .digest:
            guard p.count == 36 else { throw bad("36 bytes (digest, length)") }
            return .digest(ChunkDigest(bytes: Array(p[0..<32]))!, length: UInt32(p[32...35]))
        case .zero:
            guard p.count == 4 else { throw bad("4 bytes (length)") }
            return .zero(length: UInt32(p[0...3]))
        case .chunk:
            guard p.count > 32 else { throw bad("a digest and a zstd frame") }
            return .chunk(ChunkDigest(bytes: Array(p[0..<32]))!, frame: Array(p[32...]))
        case .end:
            guard p.count == 16 else { throw bad("16 bytes (total bytes, chunks)") }
            return .end(totalBytes: UInt64(p[0...7]), chunks: UInt64(p[8...15]))
        case .failure:
            return .failure(String(decoding: p, as: UTF8.self))
        }
    }

    static func bigEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        (0..<T.bitWidth / 8).reversed().map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
    }
}

extension FixedWidthInteger {
    /// Big-endian from exactly `bitWidth / 8` bytes.
    init(_ bytes: ArraySlice<UInt8>) {
        var v: Self = 0
        for b in bytes { v = v << 8 | Self(b) }
        self = v
    }
}
