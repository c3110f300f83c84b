import CChunkCodec

/// The one check of a stored or arriving chunk: its frame is one zstd frame of exactly `length`
/// bytes, and that content hashes to its digest (the receiver's verifier and the store's reader).
public enum ChunkContent {
    public enum Verdict: Equatable, Sendable {
        case ok
        /// Not a single zstd frame of `length` bytes.
        case notAFrame
        /// The content does not hash to the digest.
        case wrongDigest
    }

    /// Decompresses `frame` into `buffer` (at least `length` bytes) and checks it against `digest`.
    public static func check(
        frame: UnsafeRawBufferPointer, length: Int, digest: ChunkDigest, into buffer: UnsafeMutableRawBufferPointer
    ) -> Verdict {
        guard length <= buffer.count,
            bvm_zstd_decompress_exact(buffer.baseAddress, length, frame.baseAddress, frame.count) == 0
        else { return .notAFrame }
        return ChunkDigest(of: UnsafeRawBufferPointer(rebasing: buffer[0..<length])) == digest ? .ok : .wrongDigest
    }
}
