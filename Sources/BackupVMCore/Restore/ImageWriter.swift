import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Streams a stored image to a hypervisor, which decompresses it, checks the compressed stream's
/// cksum and the decompressed size against the manifest, and only then moves a file into place. A
/// block device is written in place (it must exist and be large enough).
struct ImageWriter {
    let host: RemoteHost

    func write(_ image: Manifest.StoredImage, from stored: String, to destination: String) throws {
        let fd = open(stored, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: stored) }
        defer { close(fd) }
        let script = image.kind == .block ? blockScript(image, to: destination) : fileScript(image, to: destination)
        _ = try host.stream(script, what: "restoring \(image.target) to \(destination)", stdin: fd) { _ in true }
    }

    /// Counts and checksums on the way: the compressed input (cksum) and the decompressed output (wc).
    /// The decompressor itself checks the content against the format's checksums.
    private func pipeline(_ image: Manifest.StoredImage) -> String {
        let decompress = Compression(storedFileName: image.file).decompressCommand
        return """
            mkfifo "$t/f" "$t/c"; cksum < "$t/f" > "$t/sum" & a=$!; wc -c < "$t/c" > "$t/n" & b=$!; \
            tee "$t/f" | \(decompress) | tee "$t/c"
            """
    }

    /// Fails unless what arrived matches the manifest.
    private func check(_ image: Manifest.StoredImage) -> String {
        let expected = "\(image.storedCksum) \(image.storedBytes)"
        return """
            wait $a $b; got=$(cat "$t/sum"); if [ "$got" != "\(expected)" ]; then \
            echo "the backup file arrived damaged: cksum $got, expected \(expected)" >&2; exit 3; fi; \
            n=$(cat "$t/n"); if [ "$n" != \(image.rawBytes) ]; then \
            echo "decompressed to $n bytes, expected \(image.rawBytes)" >&2; exit 3; fi
            """
    }

    private func blockScript(_ image: Manifest.StoredImage, to destination: String) -> String {
        let dst = ShellQuote.quote(destination)
        return """
            [ -b \(dst) ] || { printf '%s is not a block device\\n' \(dst) >&2; exit 4; }; \
            size=$(blockdev --getsize64 \(dst)); [ "$size" -ge \(image.rawBytes) ] || \
            { printf '%s has %s bytes, the backup needs %s\\n' \(dst) "$size" \(image.rawBytes) >&2; exit 4; }; \
            t=$(mktemp -d); trap 'rm -rf "$t"' EXIT; \
            \(pipeline(image)) | dd of=\(dst) bs=1M conv=fsync status=none; \(check(image))
            """
    }

    /// Directories made for a restored disk are searchable (qemu runs as another user and must reach
    /// the file; libvirt gives the file itself to that user when the domain starts); the file is 0600.
    private func fileScript(_ image: Manifest.StoredImage, to destination: String) -> String {
        let dst = ShellQuote.quote(destination)
        return """
            (umask 022; mkdir -p "$(dirname \(dst))"); tmp=\(dst).bvm-restore; \
            t=$(mktemp -d); trap 'rm -rf "$t"; rm -f "$tmp"' EXIT; \
            \(pipeline(image)) > "$tmp"; \(check(image)); sync "$tmp"; mv -f "$tmp" \(dst)
            """
    }
}
