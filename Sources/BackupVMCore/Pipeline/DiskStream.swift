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

    var compressor: String { compression.compressCommand(level: level) }

    /// The remote script: read `source` (a file or a block device), compress, checksum the compressed
    /// stream with `cksum` (a reader of a named pipe that tee feeds, so nothing is read twice),
    /// optionally keep it in `stageFile`; the trailer line on stderr carries the source's size and the
    /// hypervisor's `cksum` line (CRC and byte count) of the compressed stream.
    ///
    /// The uncompressed data is not hashed separately: the compressed formats carry their own
    /// checksums of it (lzop: Adler-32 per block; zstd: a frame checksum), which every decompression
    /// checks. Hashing it here as well cost a third of the throughput on the measured machines. What
    /// dd read is counted by dd itself (its summary line, in the C locale), at no cost: a read that
    /// ends early with exit 0 (a device or file that shrank, a short read) would otherwise store a
    /// short image under the disk's full size. dd's error lines go to stderr when the script fails.
    func script(source: String, workDir: String, stageFile: String?) -> String {
        script(image: .path(source), workDir: workDir, stageFile: stageFile)
    }

    func script(image: ImageSource, workDir: String, stageFile: String?) -> String {
        let work = ShellQuote.quote(workDir)
        let stage = stageFile.map { " | tee \(ShellQuote.quote($0))" } ?? ""
        return """
            mkdir -p \(work); t=$(mktemp -d \(work)/.bvm-fifo.XXXXXX); \
            trap 'r=$?; [ "$r" = 0 ] || grep -v " records \\(in\\|out\\)$" "$t/dd" >&2 2>/dev/null; rm -rf "$t"' EXIT; \
            \(image.sizeCommand); \
            mkfifo "$t/z"; \
            cksum < "$t/z" > "$t/z.sum" & b=$!; \
            \(image.readCommand) 2>"$t/dd" | \(compressor) | tee "$t/z"\(stage); \
            wait $b; \
            \(image.countCommand); \
            \(image.sizeFinish)echo "BACKUP_VM_TRAILER $size $(cat "$t/z.sum") ${n:-unknown}" >&2
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
    ) throws -> TransferredImage {
        try copy(image: .path(source), workDir: workDir, stageFile: stageFile, to: destination, abort: abort)
    }

    public func copy(
        image: ImageSource, workDir: String, stageFile: String?, to destination: String, abort: AbortFlag
    ) throws -> TransferredImage {
        do {
            return try stream(image: image, workDir: workDir, stageFile: stageFile, to: destination, abort: abort)
        } catch let error where StorageSpace.isFull(at: destination) {
            // ssh fails to write its stdout (the file) and the hypervisor's pipeline dies of SIGPIPE:
            // "exit 141 (no message)" would not tell the operator what happened.
            throw TransferError.storageFull(
                directory: (destination as NSString).deletingLastPathComponent, cause: "\(error)")
        } catch RemoteError.command(_, _, _, let stderr) where stderr.contains("No space left on device") {
            // The hypervisor's side: the staged copy (keep-on-host) or our scratch in WorkPath.
            throw TransferError.workPathFull(host: host.name, directory: workDir, cause: RemoteError.trim(stderr))
        }
    }

    private func stream(
        image: ImageSource, workDir: String, stageFile: String?, to destination: String, abort: AbortFlag
    ) throws -> TransferredImage {
        let source = image.description
        let file = try FollowedFile(creating: destination)
        let what = "reading \(source)"
        let child = try SpawnedProcess(
            host.argv(script(image: image, workDir: workDir, stageFile: stageFile)),
            stdin: nil, stdout: file.writeFD)
        var sha = SHA256()
        var crc = POSIXChecksum()
        do {
            try file.follow(child, limits: CommandLimits(stall: host.timeouts.stall, abort: abort)) { chunk in
                sha.update(bufferPointer: chunk)
                crc.update(chunk)
            }
        } catch ProcessError.cut(_, .aborted, _) {
            throw PipelineError.aborted
        } catch ProcessError.cut(_, let cut, _) {
            throw RemoteError.timedOut(host: host.name, what: what, cut: cut)
        }
        let status = child.wait()
        let stderr = child.stderr
        try host.check(status, stderr: stderr, what: what)
        try file.finish()
        let trailer = try Trailer(stderr: stderr, host: host.name, source: source)
        guard trailer.readBytes == trailer.rawBytes else {
            throw TransferError.shortRead(source: source, size: trailer.rawBytes, read: trailer.readBytes)
        }
        let count = file.readOffset
        guard trailer.streamBytes == count else {
            throw TransferError.lengthMismatch(source: source, sent: trailer.streamBytes, received: count)
        }
        let localCksum = crc.finalize()
        guard trailer.streamCksum == localCksum else {
            throw TransferError.checksumMismatch(source: source, hypervisor: trailer.streamCksum, server: localCksum)
        }
        return TransferredImage(
            rawBytes: trailer.rawBytes, storedBytes: count, storedCksum: localCksum,
            storedSHA256: sha.finalize().map { String(format: "%02x", $0) }.joined())
    }

    /// The script's last stderr line: `BACKUP_VM_TRAILER RAW_BYTES CKSUM STREAM_BYTES READ_BYTES`:
    /// the source's size, the compressed stream's cksum and length, and what dd read.
    struct Trailer {
        var rawBytes: Int64
        var streamCksum: UInt32
        var streamBytes: Int64
        var readBytes: Int64

        init(stderr: String, host: String, source: String) throws(RemoteError) {
            let what = "reading \(source)"
            guard let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix("BACKUP_VM_TRAILER ") }) else {
                throw .protocolViolation(
                    host: host, what: what, detail: "no checksum trailer; stderr: \(RemoteError.trim(stderr))")
            }
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 5, let raw = Int64(f[1]), let cksum = UInt32(f[2]), let bytes = Int64(f[3]),
                let read = Int64(f[4])
            else {
                throw .protocolViolation(host: host, what: what, detail: String(line))
            }
            (rawBytes, streamCksum, streamBytes, readBytes) = (raw, cksum, bytes, read)
        }
    }
}

/// Where an image is read on the hypervisor.
public enum ImageSource: Sendable, Equatable, CustomStringConvertible {
    /// A file or a block device, read with dd, which counts what it read (its summary line, in the C
    /// locale): a read that ends early with exit 0 (a device or file that shrank) would otherwise
    /// store a short image under the disk's full size.
    case path(String)
    /// An NBD export of a live backup job (`nbd+unix:///vda?socket=...`), read with nbdcopy, which
    /// writes the whole export or fails (pipefail fails the script then); a counting dd behind it
    /// nearly halved the throughput (docs/live-backup-spike.md §4), so its count is the export's size.
    case export(uri: String)

    public var description: String {
        switch self {
        case .path(let path): return path
        case .export(let uri): return uri
        }
    }

    /// Sets `$size` (a file or device), or starts asking for it: nbdinfo opens one more NBD
    /// connection, which is run beside the copy instead of before it (`sizeFinish` waits for it).
    var sizeCommand: String {
        switch self {
        case .path(let path):
            let src = ShellQuote.quote(path)
            return "if [ -b \(src) ]; then size=$(blockdev --getsize64 \(src)); else size=$(stat -L -c %s \(src)); fi"
        case .export(let uri):
            return "nbdinfo --size \(ShellQuote.quote(uri)) > \"$t/size\" & i=$!"
        }
    }

    /// After the copy: sets `$size` where `sizeCommand` only started asking (a failed nbdinfo
    /// fails the script).
    var sizeFinish: String {
        switch self {
        case .path: return ""
        case .export: return "wait $i; size=$(cat \"$t/size\"); n=$size; "
        }
    }

    /// Writes the image to stdout.
    var readCommand: String {
        switch self {
        case .path(let path): return "LC_ALL=C dd if=\(ShellQuote.quote(path)) bs=1M"
        // --no-extents: reading holes as zeros costs less than asking for them (block status) when
        // the output is a pipe anyway: 1.76 s instead of 1.95 s for the bench's 1 GiB disk, as fast
        // as dd on the file (same run, medians of 4).
        case .export(let uri): return "nbdcopy --no-extents \(ShellQuote.quote(uri)) -"
        }
    }

    /// Sets `$n` to the bytes read (after the pipeline; for an export `sizeFinish` does).
    var countCommand: String {
        switch self {
        case .path: return #"n=$(sed -n 's/^\([0-9][0-9]*\) bytes.*/\1/p' "$t/dd")"#
        case .export: return ":"
        }
    }
}

/// The two ends of a transfer disagree: the stored file is not what the hypervisor sent.
public enum TransferError: Error, CustomStringConvertible, Sendable, Equatable {
    case lengthMismatch(source: String, sent: Int64, received: Int64)
    case checksumMismatch(source: String, hypervisor: UInt32, server: UInt32)
    /// The file system of BackupStorage filled up during the copy.
    case storageFull(directory: String, cause: String)
    /// The hypervisor's working path filled up (the staged copy kept on the host, or scratch files).
    case workPathFull(host: String, directory: String, cause: String)
    /// dd read a different number of bytes than the disk has (it ended early, or the disk changed).
    case shortRead(source: String, size: Int64, read: Int64)

    public var description: String {
        switch self {
        case .lengthMismatch(let source, let sent, let received):
            return "\(source): the hypervisor sent \(sent) bytes, this server received \(received)"
        case .storageFull(let directory, let cause):
            return "no space left on BackupStorage (\(directory)); the partial backup was removed and older backups"
                + " are kept: free space or lower the number kept (\(cause))"
        case .workPathFull(let host, let directory, let cause):
            return "no space left in the working path \(directory) on \(host); the partial backup was removed and"
                + " older backups are kept: free space there or set WorkPath elsewhere (\(cause))"
        case .shortRead(let source, let size, let read):
            return "\(source): read \(read) bytes of \(size) (the read ended early or the disk changed size);"
                + " the partial backup was removed"
        case .checksumMismatch(let source, let hypervisor, let server):
            return "\(source): cksum of the compressed stream differs between the hypervisor (\(hypervisor))"
                + " and this server (\(server))"
        }
    }
}
