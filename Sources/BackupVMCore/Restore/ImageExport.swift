import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `backup_vm export`: one disk of a backup as its content (raw, or qcow2 for a qcow2 disk stored as
/// the file it was), written to a file or stdout on this server. A chunk image is checked first (its
/// index and every chunk, as a restore does) and then written chunk by chunk, zeros as holes when the
/// output is a file; a file image is decompressed with lzop or zstd, whose checksums check it.
public struct ImageExport {
    public let backup: BackupRef
    public let manifest: Manifest

    public init(backup: BackupRef, manifest: Manifest) {
        self.backup = backup
        self.manifest = manifest
    }

    /// The image of disk `target`, or an error listing the disks there are.
    public func image(_ target: String) throws -> Manifest.StoredImage {
        guard let image = manifest.disks.first(where: { $0.target == target }) else {
            throw RestoreError.damagedImage(
                vm: backup.vm, id: backup.id, file: target,
                detail: "no such disk in this backup (disks: \(manifest.disks.map(\.target).joined(separator: ", ")))")
        }
        return image
    }

    /// Writes the disk into `fd` (a regular file gets holes for zero chunks and is truncated to size).
    public func write(_ target: String, to fd: Int32, output: String) throws {
        let image = try image(target)
        try StoredImageCheck(backup: backup).check([image])
        let path = backup.path + "/" + image.file
        if image.chunks == nil {
            let tool = Compression(storedFileName: image.file).tool
            let child = try SpawnedProcess([tool, "-dc", "--", path], stdin: nil, stdout: fd)
            let status = child.wait()
            guard status == 0 else {
                throw RestoreError.damagedImage(
                    vm: backup.vm, id: backup.id, file: path,
                    detail: "\(tool) -d failed: \(RemoteError.trim(child.stderr))")
            }
            return
        }
        guard let bytes = Files.readRegularFile(path, limit: 1 << 30) else { throw SystemError("open", path: path) }
        let index = try ChunkIndex.parse(bytes, file: path)
        let store = ChunkStore.of(backupFile: path)
        var st = stat()
        let seekable = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        var zeros: [UInt8] = []
        for (i, entry) in index.entries.enumerated() {
            let length = index.length(of: i)
            switch entry {
            case .chunk(let digest):
                let content = try store.read(digest, length: length)
                try content.withUnsafeBytes { try WireIO.writeAll(fd, $0) }
            case .zero where seekable:
                guard lseek(fd, off_t(length), SEEK_CUR) >= 0 else { throw SystemError("lseek", path: output) }
            case .zero:
                if zeros.count != length { zeros = [UInt8](repeating: 0, count: length) }
                try zeros.withUnsafeBytes { try WireIO.writeAll(fd, $0) }
            }
        }
        if seekable {
            let end = lseek(fd, 0, SEEK_CUR)
            guard ftruncate(fd, end) == 0 else { throw SystemError("truncate", path: output) }
        }
    }
}
