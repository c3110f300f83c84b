import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Moves one image from a hypervisor into a file on this server: the hypervisor reads the source,
/// compresses it and (optionally) keeps the compressed stream in its working path; this side reads
/// ssh's stdout through one reused 1 MiB buffer, hashes it incrementally and writes it to a file that
/// is fsynced at the end. Both ends count and hash what crossed the wire; any difference fails.
public struct DiskStream: Sendable {
    public let host: RemoteHost
    public let compression: Compression
    public let level: Int

    public init(host: RemoteHost, compression: Compression, level: Int) {
        self.host = host
        self.compression = compression
        self.level = level
    }

    public struct Result: Sendable, Equatable {
        public var rawBytes: Int64
        public var storedBytes: Int64
        public var storedCksum: UInt32
        public var storedSHA256: String
    }

    public struct Mismatch: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    var compressor: String {
        switch compression {
        case .lzop: return "lzop -\(level) -c"
        case .zstd: return "zstd -q -\(level) -T0 -c"
        }
    }

    /// The remote script: read `source` (a file or a block device), compress, checksum the compressed
    /// stream with `cksum` (a reader of a named pipe that tee feeds, so nothing is read twice),
    /// optionally keep it in `stageFile`; the trailer line on stderr carries the source's size and the
    /// hypervisor's `cksum` line (CRC and byte count) of the compressed stream.
    ///
    /// The uncompressed data is not hashed separately: the compressed formats carry their own
    /// checksums of it (lzop: Adler-32 per block; zstd: a frame checksum), which every decompression
    /// checks. Hashing it here as well cost a third of the throughput on the measured machines.
    func script(source: String, workDir: String, stageFile: String?) -> String {
        let src = ShellQuote.quote(source)
        let work = ShellQuote.quote(workDir)
        let stage = stageFile.map { " | tee \(ShellQuote.quote($0))" } ?? ""
        return """
            mkdir -p \(work); t=$(mktemp -d \(work)/.bvm-fifo.XXXXXX); \
            trap 'rm -rf "$t"' EXIT; \
            if [ -b \(src) ]; then size=$(blockdev --getsize64 \(src)); else size=$(stat -L -c %s \(src)); fi; \
            mkfifo "$t/z"; \
            cksum < "$t/z" > "$t/z.sum" & b=$!; \
            dd if=\(src) bs=1M status=none | \(compressor) | tee "$t/z"\(stage); \
            wait $b; \
            echo "BACKUP_VM_TRAILER $size $(cat "$t/z.sum")" >&2
            """
    }

    /// Streams `source` into `destination` (created, 0600). Throws on any remote failure, short
    /// stream or checksum mismatch; the caller removes the partial file.
    public func copy(source: String, workDir: String, stageFile: String?, to destination: String,
                     abort: AbortFlag) throws -> Result {
        let file = try StreamingFileWriter(creating: destination)
        let digest = ConcurrentDigest()
        defer { _ = digest.finalize() }
        var count: Int64 = 0
        let stderr = try host.stream(script(source: source, workDir: workDir, stageFile: stageFile),
                                     what: "reading \(source)") { chunk in
            if abort.isRaised { return false }
            try file.write(chunk)
            digest.update(chunk)
            count += Int64(chunk.count)
            return true
        }
        if abort.isRaised { throw PipelineError.aborted }
        try file.finish()
        let sums = digest.finalize()
        guard let trailer = stderr.split(separator: "\n").last(where: { $0.hasPrefix("BACKUP_VM_TRAILER ") }) else {
            throw RemoteError.protocolViolation(host: host.name, what: "reading \(source)", detail: "no checksum trailer; stderr: \(RemoteError.trim(stderr))")
        }
        let f = trailer.split(separator: " ").map(String.init)
        guard f.count == 4, let rawBytes = Int64(f[1]), let remoteCksum = UInt32(f[2]), let remoteBytes = Int64(f[3]) else {
            throw RemoteError.protocolViolation(host: host.name, what: "reading \(source)", detail: String(trailer))
        }
        guard remoteBytes == count else {
            throw Mismatch(description: "\(source): the hypervisor sent \(remoteBytes) bytes, this server received \(count)")
        }
        let localCksum = sums.cksum
        guard remoteCksum == localCksum else {
            throw Mismatch(description: "\(source): cksum of the compressed stream differs between the hypervisor (\(remoteCksum)) and this server (\(localCksum))")
        }
        return Result(rawBytes: rawBytes, storedBytes: count, storedCksum: localCksum, storedSHA256: sums.sha256)
    }
}
