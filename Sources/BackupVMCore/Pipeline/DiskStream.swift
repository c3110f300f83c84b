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
        public var rawSHA256: String
        public var storedBytes: Int64
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

    /// The remote script: read `source` (a file or a block device), hash it, compress, hash the
    /// compressed stream, optionally tee it into `stageFile`; the trailer line on stderr carries the
    /// hypervisor's counts and checksums. Hashes are computed by readers of named pipes that tee feeds,
    /// so the data is read once.
    func script(source: String, workDir: String, stageFile: String?) -> String {
        let src = ShellQuote.quote(source)
        let work = ShellQuote.quote(workDir)
        let stage = stageFile.map { " | tee \(ShellQuote.quote($0))" } ?? ""
        return """
            mkdir -p \(work); t=$(mktemp -d \(work)/.bvm-fifo.XXXXXX); \
            trap 'rm -rf "$t"' EXIT; \
            mkfifo "$t/raw" "$t/rawc" "$t/z" "$t/zc"; \
            sha256sum < "$t/raw" > "$t/raw.sum" & a=$!; wc -c < "$t/rawc" > "$t/raw.n" & b=$!; \
            sha256sum < "$t/z" > "$t/z.sum" & c=$!; wc -c < "$t/zc" > "$t/z.n" & d=$!; \
            dd if=\(src) bs=1M status=none | tee "$t/raw" "$t/rawc" | \(compressor) | tee "$t/z" "$t/zc"\(stage); \
            wait $a $b $c $d; \
            echo "BACKUP_VM_TRAILER $(cut -c1-64 "$t/raw.sum") $(cat "$t/raw.n") $(cut -c1-64 "$t/z.sum") $(cat "$t/z.n")" >&2
            """
    }

    /// Streams `source` into `destination` (created, 0600). Throws on any remote failure, short
    /// stream or checksum mismatch; the caller removes the partial file.
    public func copy(source: String, workDir: String, stageFile: String?, to destination: String,
                     abort: AbortFlag) throws -> Result {
        let fd = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: destination) }
        defer { close(fd) }
        var hasher = SHA256()
        var count: Int64 = 0
        let stderr = try host.stream(script(source: source, workDir: workDir, stageFile: stageFile),
                                     what: "reading \(source)") { chunk in
            if abort.isRaised { return false }
            hasher.update(bufferPointer: chunk)
            var offset = 0
            while offset < chunk.count {
                let n = write(fd, chunk.baseAddress! + offset, chunk.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: destination)
                }
                offset += n
            }
            count += Int64(chunk.count)
            return true
        }
        if abort.isRaised { throw PipelineError.aborted }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: destination) }
        let local = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        guard let trailer = stderr.split(separator: "\n").last(where: { $0.hasPrefix("BACKUP_VM_TRAILER ") }) else {
            throw RemoteError.protocolViolation(host: host.name, what: "reading \(source)", detail: "no checksum trailer; stderr: \(RemoteError.trim(stderr))")
        }
        let f = trailer.split(separator: " ").map(String.init)
        guard f.count == 5, let rawBytes = Int64(f[2]), let remoteStoredBytes = Int64(f[4]), f[1].count == 64, f[3].count == 64 else {
            throw RemoteError.protocolViolation(host: host.name, what: "reading \(source)", detail: String(trailer))
        }
        guard remoteStoredBytes == count else {
            throw Mismatch(description: "\(source): the hypervisor sent \(remoteStoredBytes) bytes, this server received \(count)")
        }
        guard f[3] == local else {
            throw Mismatch(description: "\(source): checksum of the compressed stream differs between the hypervisor (\(f[3])) and this server (\(local))")
        }
        return Result(rawBytes: rawBytes, rawSHA256: f[1], storedBytes: count, storedSHA256: local)
    }
}
