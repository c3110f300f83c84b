import CChunkCodec

/// The SHA-256 of a chunk's content: its name in the store and on the wire.
public struct ChunkDigest: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// nil unless exactly 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == ChunkDigest.byteCount else { return nil }
        self.bytes = bytes
    }

    /// The digest of `buffer`'s bytes.
    public init(of buffer: UnsafeRawBufferPointer) {
        var out = [UInt8](repeating: 0, count: ChunkDigest.byteCount)
        out.withUnsafeMutableBufferPointer { bvm_sha256(buffer.baseAddress, buffer.count, $0.baseAddress) }
        bytes = out
    }

    /// From 64 lower-case hex digits (an index line, a chunk's file name); nil for anything else.
    public init?(hex: Substring) {
        guard hex.utf8.count == 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(32)
        var high: UInt8? = nil
        for c in hex.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        bytes = out
    }

    public init?(hex: String) { self.init(hex: Substring(hex)) }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var chars = [UInt8]()
        chars.reserveCapacity(64)
        for b in bytes {
            chars.append(digits[Int(b >> 4)])
            chars.append(digits[Int(b & 15)])
        }
        return String(decoding: chars, as: UTF8.self)
    }

    public var description: String { hex }
}
