import Foundation

/// Where one disk of a backup goes on the hypervisor: a file stays a file, an LV an LV (whichever
/// path the domain used for it), a block device that is not an LV the same device. For a copy under a
/// new name (`--as`), files and LVs get names of the copy's own; a device has no name to change, so
/// such a disk cannot be copied.
enum RestoreDestination: Sendable, Equatable {
    case file(path: String)
    /// `path` is how the domain names the LV: kept as it was for the VM itself (/dev/VG/LV or
    /// /dev/mapper/VG-LV), /dev/VG/LV for a copy.
    case volume(VolumeName, path: String)
    /// A block device that is not an LV: written in place, with the VM stopped.
    case device(path: String)
    /// A block disk of a manifest of format 1, which did not record whether it was an LV: the
    /// hypervisor is asked (RestorePreflight).
    case block(path: String)

    var path: String {
        switch self {
        case .file(let path), .volume(_, let path), .device(let path), .block(let path): return path
        }
    }

    /// Where the disk came from, as the manifest records it.
    init(_ image: Manifest.StoredImage, formatVersion: Int) {
        if image.kind != .block {
            self = .file(path: image.source)
        } else if let volume = image.volumeName {
            self = .volume(volume, path: image.source)
        } else {
            self = formatVersion >= 2 ? .device(path: image.source) : .block(path: image.source)
        }
    }

    /// The destination of the copy `new` of VM `old`: the old name in the file's or LV's own name
    /// replaced by the new one, else the new name put in front (CopyName); directories and the VG
    /// stay as they are.
    func renamed(from old: String, to new: String, disk: String, host: String) throws(RestoreError)
        -> RestoreDestination
    {
        switch self {
        case .file(let path):
            let dir = (path as NSString).deletingLastPathComponent
            return .file(path: dir + "/" + CopyName.renamed((path as NSString).lastPathComponent, from: old, to: new))
        case .volume(let volume, _):
            let copy = VolumeName(vg: volume.vg, lv: CopyName.renamed(volume.lv, from: old, to: new))
            return .volume(copy, path: copy.path)
        case .device(let path), .block(let path):
            throw .unfitDestination(
                disk: disk, path: path, host: host,
                what: "is a block device that is not an LV: a copy under another name cannot have one of its own."
                    + " Restore \(old) itself, or exclude the disk (ExcludeLVs) from its backups")
        }
    }
}
