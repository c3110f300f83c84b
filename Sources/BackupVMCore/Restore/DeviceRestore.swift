/// A block device that is not an LV (a partition, an md or multipath device): there is nowhere beside
/// it to write to, so it is written in place, with the VM stopped, after every other disk is written
/// and only when its size equals the backup's (checked before anything is touched, and again here).
/// Its stored image has been checked against the manifest before; a stream that still breaks off
/// leaves it half written, which the error says.
struct DeviceRestore: DiskRestore {
    let host: RemoteHost
    let image: Manifest.StoredImage
    let path: String

    var target: String { image.target }
    var writesAside: Bool { false }

    /// Once started, it is not aborted: a device half written is worse than one written to the end.
    func write(from stored: String, abort: AbortFlag?) throws {
        let d = ShellQuote.quote(path)
        let raw = image.rawBytes
        let script = """
            [ -b \(d) ] || { printf '%s is not a block device\\n' \(d) >&2; exit 4; }; \
            size=$(blockdev --getsize64 \(d)); [ "$size" = \(raw) ] || \
            { printf '%s has %s bytes, the backup %s\\n' \(d) "$size" \(raw) >&2; exit 4; }; \
            \(ImageWriter.scratch(onFailure: ":")); \
            \(ImageWriter.pipeline(image)) | dd of=\(d) bs=1M conv=fsync status=none; \(ImageWriter.check(image)); ok=1
            """
        try ImageWriter(host: host).send(
            stored, image: image, script: script,
            what: "writing \(image.target) in place on \(path) (a block device that is not an LV; after a failure"
                + " it holds part of the backup)")
    }

    func swapIn() throws {}
    func swapBack() throws {}
    func discard() throws {}
    func finish() -> String? { nil }
}
