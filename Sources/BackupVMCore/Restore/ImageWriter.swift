import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Streams a stored image to a hypervisor, which decompresses it into whatever a script names and
/// fails unless the compressed stream's cksum and size and the decompressed size match the manifest
/// (the decompressor itself checks the content against the format's checksums). The scripts that
/// say where the bytes go are the callers' (a new LV, a file beside the disk, a device in place);
/// this type owns the stream and its checks.
struct ImageWriter {
    let host: RemoteHost

    /// Runs `script` with the stored image on its stdin (a chunk image as its chunks' zstd frames, fed
    /// through a pipe); `abort` ends it at once.
    func send(_ stored: String, image: Manifest.StoredImage, script: String, what: String, abort: AbortFlag? = nil)
        throws
    {
        if image.chunks != nil { return try sendChunks(stored, script: script, what: what, abort: abort) }
        let fd = open(stored, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: stored) }
        defer { close(fd) }
        _ = try host.stream(script, what: what, stdin: fd, abort: abort) { _ in true }
    }

    private func sendChunks(_ indexFile: String, script: String, what: String, abort: AbortFlag?) throws {
        guard let bytes = Files.readRegularFile(indexFile, limit: 1 << 30) else {
            throw SystemError("open", path: indexFile)
        }
        let feed = ChunkFeed(index: try ChunkIndex.parse(bytes, file: indexFile), store: .of(backupFile: indexFile))
        let fd = try feed.start()
        // Our read end is closed before the writer is waited for: a writer blocked on a reader that went
        // away then gets EPIPE instead of waiting forever. The command's own failure is the one told.
        do {
            _ = try host.stream(script, what: what, stdin: fd, abort: abort, progress: feed.progress) { _ in true }
        } catch {
            close(fd)
            try? feed.finish()
            throw error
        }
        close(fd)
        try feed.finish()
    }

    /// A file (the RAM state, a restore test's disk): written beside `destination`, checked, synced,
    /// renamed into place.
    func write(
        _ image: Manifest.StoredImage, from stored: String, to destination: String, id: String, abort: AbortFlag? = nil
    ) throws {
        let dst = ShellQuote.quote(destination)
        let script =
            Self.fileScript(image, to: destination, temporary: BackupNames.restoringFile(destination, id: id))
            + "; mv -f \"$tmp\" \(dst)"
        try send(
            stored, image: image, script: script, what: "restoring \(image.target) to \(destination)", abort: abort)
    }

    /// Writes the image into `$tmp` (set to `temporary`) beside `destination`, which it removes unless
    /// the image arrived whole. Directories made for a restored disk are searchable (qemu runs as
    /// another user and must reach the file; libvirt gives it the file when the domain starts).
    ///
    /// A qcow2 disk stored as its raw content (a live backup) is written as a sparse raw file first
    /// and converted back to qcow2 (qemu-img cannot read a pipe), so the disk keeps its format. The
    /// decompressed size is the size of the file written (a new file: every byte the decompressor gave
    /// is in it), so the stream is not copied once more to be counted.
    static func fileScript(_ image: Manifest.StoredImage, to destination: String, temporary: String) -> String {
        let head =
            "(umask 022; mkdir -p \"$(dirname \(ShellQuote.quote(destination)))\"); tmp=\(ShellQuote.quote(temporary)); "
        guard image.storedContent == .raw, image.format == .qcow2 else {
            return head + """
                \(scratch(onFailure: "rm -f \"$tmp\"")); \
                \(pipeline(image, countingOutput: false)) > "$tmp"; \(check(image, written: "\"$tmp\"")); sync "$tmp"; ok=1
                """
        }
        return head + """
            \(scratch(onFailure: "rm -f \"$tmp\" \"$tmp.raw\"")); \
            \(pipeline(image, countingOutput: false)) | dd of="$tmp.raw" bs=1M iflag=fullblock conv=sparse status=none; \
            \(check(image, written: "\"$tmp.raw\"")); \
            truncate -s \(image.rawBytes) "$tmp.raw"; \
            qemu-img convert -f raw -O qcow2 "$tmp.raw" "$tmp"; rm -f "$tmp.raw"; sync "$tmp"; ok=1
            """
    }

    /// A scratch directory `$t` for the counters, removed on exit, and `undo` run on exit unless the
    /// script set `ok=1` (also when the stream breaks off because this side went away). `undo` is the
    /// body of a shell function, so values in it are quoted as anywhere else.
    static func scratch(onFailure undo: String) -> String {
        "ok=0; undo() { \(undo); }; t=$(mktemp -d); "
            + "trap 'rm -rf \"$t\"; [ \"$ok\" = 1 ] || undo >/dev/null 2>&1 || true' EXIT"
    }

    /// Counts and checksums on the way: the compressed input (cksum) and, with `countingOutput`, the
    /// decompressed output (wc; an LV or a device, whose own size says nothing), into `$t`. The
    /// decompressed stream comes out of the pipeline's end.
    static func pipeline(_ image: Manifest.StoredImage, countingOutput: Bool = true) -> String {
        // A chunk image arrives as zstd frames (ChunkFeed).
        let decompress = (image.chunks != nil ? .zstd : Compression(storedFileName: image.file)).decompressCommand
        guard countingOutput else {
            return """
                mkfifo "$t/f"; cksum < "$t/f" > "$t/sum" & a=$!; tee "$t/f" | \(decompress)
                """
        }
        return """
            mkfifo "$t/f" "$t/c"; cksum < "$t/f" > "$t/sum" & a=$!; wc -c < "$t/c" > "$t/n" & b=$!; \
            tee "$t/f" | \(decompress) | tee "$t/c"
            """
    }

    /// Fails unless what arrived matches the manifest.
    /// (A chunk image's stream is made from its chunks as it is sent: it has no stored cksum; each
    /// chunk was checked against its digest before, and each zstd frame carries its own checksum.)
    /// `written`: the new file (a shell word) the stream went into, whose size is the decompressed
    /// size (the pipeline did not count it); nil: wc's count.
    static func check(_ image: Manifest.StoredImage, written: String? = nil) -> String {
        let expected = "\(image.storedCksum) \(image.storedBytes)"
        let (waited, size) =
            if let written { ("wait $a", "n=$(stat -c %s \(written))") } else { ("wait $a $b", "n=$(cat \"$t/n\")") }
        let compressed =
            image.chunks != nil
            ? "\(waited); "
            : """
            \(waited); got=$(cat "$t/sum"); if [ "$got" != "\(expected)" ]; then \
            echo "the backup file arrived damaged: cksum $got, expected \(expected)" >&2; exit 3; fi
            """ + "; "
        return compressed + """
            \(size); if [ "$n" != \(image.rawBytes) ]; then \
            echo "decompressed to $n bytes, expected \(image.rawBytes)" >&2; exit 3; fi
            """
    }
}
