import Foundation

/// Before a restore touches anything: every image it is about to write is in the backup with the size
/// and SHA-256 its manifest records (what `backup_vm verify` checks first). The hypervisor checks the
/// content once more while it decompresses (the format's checksums, the stream's cksum and size), and
/// writes beside the disk; so a stream that still goes wrong replaces nothing either.
struct StoredImageCheck {
    let backup: BackupRef

    func check(_ images: [Manifest.StoredImage]) throws(RestoreError) {
        for image in images {
            let path = backup.path + "/" + image.file
            guard Files.exists(path) else { throw damaged(path, "missing") }
            let stored: (bytes: Int64, digest: String)
            do { stored = try FileDigest.sha256(ofFile: path) } catch { throw damaged(path, "unreadable: \(error)") }
            if stored.bytes != image.storedBytes {
                throw damaged(
                    path, "\(stored.bytes) bytes, the manifest says \(image.storedBytes) (cut short or grown)")
            }
            if stored.digest != image.storedSHA256 {
                throw damaged(path, "sha256 \(stored.digest), the manifest says \(image.storedSHA256)")
            }
            // A chunk image: every chunk it names is read and hashed before anything is written.
            if image.chunks != nil {
                if let problem = ChunkImageCheck(store: .of(backupFile: path)).problems(indexFile: path, image: image)
                    .first
                {
                    throw damaged(path, problem)
                }
            }
        }
    }

    private func damaged(_ file: String, _ detail: String) -> RestoreError {
        .damagedImage(vm: backup.vm, id: backup.id, file: file, detail: detail)
    }
}
