import CChunkCodec
import ChunkWire
import Foundation

@testable import BackupVMCore

/// Disk images for the chunk-store tests: reproducible content chunk by chunk.
enum ChunkTestData {
    static let chunk = ChunkFormat.chunkSize

    /// `count` bytes of pseudo-random data (xorshift), different for each seed.
    static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                words[i] = x
            }
        }
        return out
    }

    /// Compressible text-like content.
    static func text(_ count: Int, seed: Int) -> [UInt8] {
        let line = Array("block \(seed) of the chunk-store test disk, some words repeated\n".utf8)
        return (0..<count).map { line[$0 % line.count] }
    }

    static func write(_ bytes: [UInt8], to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    /// One zstd frame of `content` (for hand-made frames in the hostile-stream tests).
    static func zstd(_ content: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bvm_zstd_bound(content.count))
        let n = out.withUnsafeMutableBytes { o in
            content.withUnsafeBytes { bvm_zstd_compress(o.baseAddress, o.count, $0.baseAddress, $0.count, 1) }
        }
        return Array(out[0..<n])
    }

    static func digest(_ content: [UInt8]) -> ChunkDigest { content.withUnsafeBytes { ChunkDigest(of: $0) } }

    /// A disk's content put back together from its index, as a restore does.
    static func reassemble(_ index: ChunkIndex, store: ChunkStore) throws -> [UInt8] {
        var out: [UInt8] = []
        for (i, entry) in index.entries.enumerated() {
            switch entry {
            case .zero: out += [UInt8](repeating: 0, count: index.length(of: i))
            case .chunk(let d): out += try store.read(d, length: index.length(of: i))
            }
        }
        return out
    }

    /// Chunk files in the store (not counting staging).
    static func storedChunks(_ store: ChunkStore) -> [String] {
        let e = FileManager.default.enumerator(atPath: store.root)
        var found: [String] = []
        while let p = e?.nextObject() as? String {
            if p.hasSuffix(".zst") && !p.hasPrefix(".") { found.append(p) }  // not staged, trash, quarantine
        }
        return found
    }
}

/// Bytes from memory, as a ByteSource (hand-made frame streams).
struct BytesSource: ByteSource {
    var bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        if n > 0 {
            bytes[offset..<(offset + n)].withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
        offset += n
        return n
    }
}
