import Foundation

/// Before a restore touches anything: every image it is about to write is in the backup with the size
/// and SHA-256 its manifest records (what `backup_vm verify` checks first). The hypervisor checks the
/// content once more while it decompresses (the format's checksums, the stream's cksum and size), and
/// writes beside the disk; so a stream that still goes wrong replaces nothing either.
///
/// The images are read and hashed several at once (one core each, up to the cores this server has):
/// a VM's images are independent, and a restore waits for all of them before it writes.
struct StoredImageCheck {
    let backup: BackupRef
    /// Images read at once.
    var width = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// `stop`, when raised, ends the check early with RestoreError.aborted (the restore was refused
    /// meanwhile for another reason, or the operator pressed Ctrl-C).
    func check(_ images: [Manifest.StoredImage], stop: AbortFlag? = nil) throws(RestoreError) {
        let backup = self.backup
        do {
            try BoundedThreads.forEach(images, width: width, stop: stop) { image in
                try Self.check(image, in: backup, stop: stop)
            }
        } catch let error as RestoreError {
            throw error
        } catch {
            throw .aborted  // only RestoreError is thrown above
        }
        if stop?.isRaised == true { throw .aborted }
    }

    private static func check(_ image: Manifest.StoredImage, in backup: BackupRef, stop: AbortFlag?)
        throws(RestoreError)
    {
        let path = backup.path + "/" + image.file
        func damaged(_ detail: String) -> RestoreError {
            .damagedImage(vm: backup.vm, id: backup.id, file: path, detail: detail)
        }
        guard Files.exists(path) else { throw damaged("missing") }
        let stored: (bytes: Int64, digest: String)
        do { stored = try FileDigest.sha256(ofFile: path, stop: stop) } catch FileDigest.Stopped.stopped {
            throw .aborted
        } catch { throw damaged("unreadable: \(error)") }
        if stored.bytes != image.storedBytes {
            throw damaged("\(stored.bytes) bytes, the manifest says \(image.storedBytes) (cut short or grown)")
        }
        if stored.digest != image.storedSHA256 {
            throw damaged("sha256 \(stored.digest), the manifest says \(image.storedSHA256)")
        }
        // A chunk image: every chunk it names is read and hashed before anything is written.
        if image.chunks != nil {
            let problems = ChunkImageCheck(store: .of(backupFile: path), stop: stop).problems(
                indexFile: path, image: image)
            if stop?.isRaised == true { throw .aborted }
            if let problem = problems.first { throw damaged(problem) }
        }
    }
}
