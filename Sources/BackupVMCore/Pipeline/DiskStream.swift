import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Moves one image from a hypervisor into a file on this server: the hypervisor reads the source,
/// compresses it and (optionally) keeps the compressed stream in its working path; ssh writes it into
/// the file here, which this side reads back behind it through one reused 1 MiB buffer, hashes
/// incrementally and fsyncs at the end. Both ends count and hash what crossed the wire; any
/// difference fails.
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
    ///
    /// ssh writes the file itself (its stdout is the file, see FollowedFile); this thread reads it
    /// back behind it and computes the CRC and SHA-256, so ssh never waits for the hashing.
    public func copy(
        source: String, workDir: String, stageFile: String?, to destination: String,
        abort: AbortFlag
    ) throws -> Result {
        let file = try FollowedFile(creating: destination)
        let what = "reading \(source)"
        let child = try SpawnedProcess(
            host.argv(script(source: source, workDir: workDir, stageFile: stageFile)),
            stdin: nil, stdout: file.writeFD)
        var sha = SHA256()
        var crc = POSIXChecksum()
        try file.follow(child, abort: abort) { chunk in
            sha.update(bufferPointer: chunk)
            crc.update(chunk)
        }
        let status = child.wait()
        let stderr = child.stderr
        try host.check(status, stderr: stderr, what: what)
        try file.finish()
        let count = file.readOffset
        guard let trailer = stderr.split(separator: "\n").last(where: { $0.hasPrefix("BACKUP_VM_TRAILER ") }) else {
            throw RemoteError.protocolViolation(
                host: host.name, what: "reading \(source)",
                detail: "no checksum trailer; stderr: \(RemoteError.trim(stderr))")
        }
        let f = trailer.split(separator: " ").map(String.init)
        guard f.count == 4, let rawBytes = Int64(f[1]), let remoteCksum = UInt32(f[2]), let remoteBytes = Int64(f[3])
        else {
            throw RemoteError.protocolViolation(host: host.name, what: "reading \(source)", detail: String(trailer))
        }
        guard remoteBytes == count else {
            throw Mismatch(
                description: "\(source): the hypervisor sent \(remoteBytes) bytes, this server received \(count)")
        }
        let localCksum = crc.finalize()
        guard remoteCksum == localCksum else {
            throw Mismatch(
                description:
                    "\(source): cksum of the compressed stream differs between the hypervisor (\(remoteCksum)) and this server (\(localCksum))"
            )
        }
        return Result(
            rawBytes: rawBytes, storedBytes: count, storedCksum: localCksum,
            storedSHA256: sha.finalize().map { String(format: "%02x", $0) }.joined())
    }
}
