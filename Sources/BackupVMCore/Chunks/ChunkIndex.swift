import ChunkWire
import Foundation

/// One disk of one backup in the chunk store: the ordered list of its chunks. A text file
/// (`vda.index` in the backup directory), so that a shell loop can restore it without the tool:
///
///     bvm-chunk-index 1
///     size 268435456
///     chunk-size 4194304
///     chunks 64
///     3f2a…(64 hex)      one line per chunk, in disk order; `zero` for an all-zero chunk
///     zero
///     …
///     sha256 9c1e…       SHA-256 of every byte above this line
///
/// Every chunk is `chunk-size` bytes but the last, which holds the rest of `size`.
public struct ChunkIndex: Equatable, Sendable {
    public enum Entry: Equatable, Sendable {
        case chunk(ChunkDigest)
        case zero
    }

    public static let magic = "bvm-chunk-index 1"

    public var size: Int64
    public var chunkSize: Int
    public var entries: [Entry]

    public init(size: Int64, chunkSize: Int = ChunkFormat.chunkSize, entries: [Entry]) {
        self.size = size
        self.chunkSize = chunkSize
        self.entries = entries
    }

    /// The length of chunk `i` (the last may be short).
    public func length(of i: Int) -> Int {
        i == entries.count - 1 ? Int(size - Int64(chunkSize) * Int64(i)) : chunkSize
    }

    /// The distinct chunks this index uses.
    public var digests: Set<ChunkDigest> {
        Set(entries.compactMap { if case .chunk(let d) = $0 { return d } else { return nil } })
    }

    public func serialized() -> [UInt8] {
        var text = "\(ChunkIndex.magic)\nsize \(size)\nchunk-size \(chunkSize)\nchunks \(entries.count)\n"
        text.reserveCapacity(text.utf8.count + entries.count * 65 + 72)
        for entry in entries {
            switch entry {
            case .chunk(let d): text += d.hex + "\n"
            case .zero: text += "zero\n"
            }
        }
        var bytes = Array(text.utf8)
        let sum = bytes.withUnsafeBytes { ChunkDigest(of: $0) }
        bytes += Array("sha256 \(sum.hex)\n".utf8)
        return bytes
    }

    /// Parses and checks an index: its own checksum first (a damaged index is never half-believed),
    /// then every line; errors name the file and line.
    public static func parse(_ bytes: [UInt8], file: String) throws -> ChunkIndex {
        func fail(_ line: Int, _ why: String) -> ChunkIndexError {
            ChunkIndexError(file: file, line: line, reason: why)
        }
        guard let lastNewline = bytes.dropLast().lastIndex(of: UInt8(ascii: "\n")), bytes.last == UInt8(ascii: "\n")
        else { throw fail(1, "not a chunk index (no lines)") }
        let body = bytes[...lastNewline]
        let sumLine = String(decoding: bytes[(lastNewline + 1)..<(bytes.count - 1)], as: UTF8.self)
        let lines = String(decoding: body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .dropLast()
        let sumLineNumber = lines.count + 1
        guard sumLine.hasPrefix("sha256 "), let recorded = ChunkDigest(hex: sumLine.dropFirst(7)) else {
            throw fail(sumLineNumber, "expected `sha256 <64 hex digits>` as the last line")
        }
        guard body.withUnsafeBytes({ ChunkDigest(of: $0) }) == recorded else {
            throw fail(sumLineNumber, "the index's checksum does not match its content (damaged)")
        }
        let header = Array(lines.prefix(4))
        guard header.count == 4, header[0] == magic else { throw fail(1, "expected `\(magic)`") }
        func number(_ i: Int, _ key: String) throws -> Int64 {
            guard header[i].hasPrefix(key + " "), let v = Int64(header[i].dropFirst(key.count + 1)), v >= 0 else {
                throw fail(i + 1, "expected `\(key) <number>`")
            }
            return v
        }
        let size = try number(1, "size")
        let chunkSize = try number(2, "chunk-size")
        let count = try number(3, "chunks")
        guard chunkSize == ChunkFormat.chunkSize else {
            throw fail(3, "chunk size \(chunkSize) (this version reads \(ChunkFormat.chunkSize))")
        }
        let expected = (size + chunkSize - 1) / chunkSize
        guard count == expected else { throw fail(4, "\(count) chunks for \(size) bytes (expected \(expected))") }
        guard lines.count - 4 == count else { throw fail(4, "says \(count) chunks, lists \(lines.count - 4)") }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        for (offset, line) in lines.dropFirst(4).enumerated() {
            if line == "zero" {
                entries.append(.zero)
            } else if let d = ChunkDigest(hex: line) {
                entries.append(.chunk(d))
            } else {
                throw fail(offset + 5, "expected 64 lower-case hex digits or `zero`")
            }
        }
        return ChunkIndex(size: size, chunkSize: Int(chunkSize), entries: entries)
    }
}

public struct ChunkIndexError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int
    public let reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}
