import CChunkCodec

/// Constants of the chunk store and its wire protocol (docs/chunk-store.md describes both).
public enum ChunkFormat {
    /// Every disk is cut into chunks of this many bytes (the last one may be shorter).
    public static let chunkSize = 4 * 1024 * 1024
    /// The protocol version the helper and the server speak; a mismatch ends the job before any data.
    public static let protocolVersion: UInt8 = 1
    /// The helper keeps at most this many chunks waiting for the server's answer: enough to keep the
    /// wire busy across a round trip, bounded memory on the hypervisor (window × 4 MiB).
    public static let window = 4
    /// The largest frame payload either side accepts: a digest and one chunk's worst-case zstd frame.
    public static var maxPayload: Int { ChunkDigest.byteCount + Int(bvmZstdBound(chunkSize)) + 64 }
    /// The zstd level the helper compresses with unless told otherwise.
    public static let defaultLevel: Int32 = 1
}

func bvmZstdBound(_ n: Int) -> Int { Int(bvm_zstd_bound(n)) }
