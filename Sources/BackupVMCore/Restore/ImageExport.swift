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

    /// Writes the disk into `fd` (a regular file gets holes for zero chunks where that is safe, and
    /// ends where the image ends).
    public func write(_ target: String, to fd: Int32, output: String) throws {
        let image = try image(target)
        try StoredImageCheck(backup: backup).check([image])
        let path = backup.path + "/" + image.file
        let sink = ExportSink(fd: fd, name: output)
        if image.chunks == nil {
            let tool = Compression(storedFileName: image.file).tool
            let child = try SpawnedProcess([tool, "-dc", "--", path], stdin: nil, stdout: fd)
            let status = child.wait()
            guard status == 0 else {
                throw RestoreError.damagedImage(
                    vm: backup.vm, id: backup.id, file: path,
                    detail: "\(tool) -d failed: \(RemoteError.trim(child.stderr))")
            }
            return try sink.finish()
        }
        let index = try ChunkIndex.parse(try Files.readRegularFileOrThrow(path, limit: 1 << 30), file: path)
        let store = ChunkStore.of(backupFile: path)
        var zeros: [UInt8] = []
        for (i, entry) in index.entries.enumerated() {
            let length = index.length(of: i)
            switch entry {
            case .chunk(let digest):
                let content = try store.read(digest, length: length)
                try content.withUnsafeBytes { try WireIO.writeAll(fd, $0) }
            case .zero where sink.holes:
                guard lseek(fd, off_t(length), SEEK_CUR) >= 0 else { throw SystemError("lseek", path: output) }
            case .zero:
                if zeros.count != length { zeros = [UInt8](repeating: 0, count: length) }
                try zeros.withUnsafeBytes { try WireIO.writeAll(fd, $0) }
            }
        }
        try sink.finish()
    }
}

/// Where an export writes, and what it may do there. Holes (a seek over a zero chunk) only in a
/// regular file that is written at its end without O_APPEND: with O_APPEND (`>>`, nohup, systemd's
/// `append:`) every write lands at the end whatever the seek did, so the zeros would be lost and the
/// image shifted (it was, with exit 0); in a file opened without truncation (`1<>FILE`) a seek would
/// leave its old bytes where zeros belong. Everywhere else the zeros are written. A regular file
/// without O_APPEND is cut where the image ends, so no old bytes follow it.
struct ExportSink {
    let fd: Int32
    let name: String
    let holes: Bool
    let truncates: Bool

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
        var st = stat()
        let flags = fcntl(fd, F_GETFL)
        let regular = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        let appending = flags < 0 || (flags & O_APPEND) != 0
        truncates = regular && !appending
        holes = truncates && lseek(fd, 0, SEEK_CUR) == st.st_size
    }

    func finish() throws {
        guard truncates else { return }
        let end = lseek(fd, 0, SEEK_CUR)
        guard end >= 0, ftruncate(fd, end) == 0 else { throw SystemError("truncate", path: name) }
    }
}
