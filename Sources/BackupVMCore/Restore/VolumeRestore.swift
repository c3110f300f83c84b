/// An LV disk: written into a new LV (`LV-bvmrestore-ID`, in the same VG, made like the LV it
/// replaces) and swapped in by lvrename; the replaced LV (`LV-bvmreplaced-ID`) goes once the domain
/// is defined. A new LV that did not check out is removed by the script that wrote it (also when
/// this side went away mid-stream), and again by `discard`.
struct VolumeRestore: DiskRestore {
    let host: RemoteHost
    let image: Manifest.StoredImage
    let volume: VolumeName
    let path: String
    /// The LV being replaced; nil when there is none (yet).
    let existing: VolumeFacts?
    /// The new LV's size: the replaced LV's (the disk keeps its size) or the backup's.
    let bytes: Int64
    /// The restore's ID (its start), in our LV names.
    let id: String

    var target: String { image.target }
    var writesAside: Bool { true }
    var new: VolumeName { VolumeName(vg: volume.vg, lv: BackupNames.restoringLV(of: volume.lv, id: id)) }
    var replaced: VolumeName? {
        existing.map { _ in VolumeName(vg: volume.vg, lv: BackupNames.replacedLV(of: volume.lv, id: id)) }
    }
    private var lvm: LVM { LVM(host: host) }

    func write(from stored: String, abort: AbortFlag?) throws {
        let q = ShellQuote.quote(new.fullName)
        let script = """
            \(ImageWriter.scratch(onFailure: Self.removeQuietly(q))); \
            \(LVM.createCommand(new, bytes: bytes, like: existing)); \
            p=$(lvs --noheadings -o lv_path \(q) | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'); \
            [ -n "$p" ] || { echo \(ShellQuote.quote("lvs shows no device for \(new)")) >&2; exit 4; }; \
            \(ImageWriter.pipeline(image)) | dd of="$p" bs=1M conv=notrunc,fsync status=none; \
            \(ImageWriter.check(image)); \(zeroTail(q)) ok=1
            """
        try ImageWriter(host: host).send(
            stored, image: image, script: script,
            what: "writing \(image.target) into the new LV \(new) (\(volume) is untouched until it is complete)",
            abort: abort)
    }

    /// LVM rounds the size up to whole extents, and a new LV holds whatever its extents held before:
    /// what lies past the image is zeroed, so no other volume's old data shows through. (Thin LVs read
    /// zeros where nothing was written.)
    private func zeroTail(_ q: String) -> String {
        guard existing?.isThin != true else { return "" }
        let raw = image.rawBytes
        return """
            s=$(lvs --noheadings --nosuffix --units b -o lv_size \(q) | tr -d ' '); if [ "$s" -gt \(raw) ]; then \
            dd if=/dev/zero of="$p" bs=1M seek=\(raw) count=$((s - \(raw))) oflag=seek_bytes iflag=count_bytes \
            conv=notrunc,fsync status=none; fi;
            """
    }

    /// The new LV's removal inside the writing script's exit trap: retried while udev still reads it.
    static func removeQuietly(_ q: String) -> String {
        "for i in 1 2 3 4 5; do lvs \(q) >/dev/null 2>&1 || break; lvremove -q -f \(q) && break; sleep 1; done"
    }

    func swapIn() throws { try lvm.swap(new, into: volume, keeping: replaced) }
    func swapBack() throws { try lvm.unswap(new, from: volume, replaced: replaced) }
    func discard() throws { try lvm.removeRestoreVolume(new) }

    func finish() -> String? {
        guard let replaced, let existing else { return nil }
        if existing.hasSnapshots {
            return "\(volume) had snapshots, which stay with its old content: it is kept as \(replaced);"
                + " lvremove it with them when they are no longer needed"
        }
        do {
            try lvm.removeRestoreVolume(replaced)
            return nil
        } catch {
            return "the replaced LV \(replaced) could not be removed (\(error)); lvremove it by hand"
        }
    }
}
