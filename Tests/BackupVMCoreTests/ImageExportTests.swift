import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// `backup_vm export` into whatever stdout an operator gives it.
@Suite(.tags(.spool))
struct ImageExportTests {
    let dir = TempDir("export")
    var storage: String { dir.path + "/storage" }
    let head = Array("HEADER".utf8)

    /// A chunk-store backup of one disk: a chunk of text, a zero chunk, a short chunk of text.
    func chunkBackup() throws -> (ImageExport, [UInt8]) {
        let store = ChunkStore(storage: storage)
        let staging = try store.staging(for: "vm1.20261101T000000Z")
        let first = ChunkTestData.text(ChunkFormat.chunkSize, seed: 1)
        let last = ChunkTestData.text(1000, seed: 2)
        for content in [first, last] {
            let frame = ChunkTestData.zstd(content)
            try frame.withUnsafeBytes { try staging.write(ChunkTestData.digest(content), frame: $0) }
        }
        try staging.commit()
        staging.release()
        let index = ChunkIndex(
            size: Int64(2 * ChunkFormat.chunkSize + last.count),
            entries: [.chunk(ChunkTestData.digest(first)), .zero, .chunk(ChunkTestData.digest(last))])
        let image = first + [UInt8](repeating: 0, count: ChunkFormat.chunkSize) + last
        let stored = index.serialized()
        return (try commit(file: "vda.index", bytes: stored, raw: index.size, chunks: 3), image)
    }

    /// A Store=files backup: the image compressed by the real lzop.
    func lzopBackup() throws -> (ImageExport, [UInt8]) {
        let image = ChunkTestData.text(300_000, seed: 3) + [UInt8](repeating: 0, count: 100_000)
        ChunkTestData.write(image, to: dir.path + "/raw")
        let r = try runTool("/usr/bin/lzop", ["-1", "-o", dir.path + "/vda.raw.lzo", dir.path + "/raw"])
        #expect(r.status == 0, "\(r.err)")
        let stored = try Files.readRegularFileOrThrow(dir.path + "/vda.raw.lzo", limit: 1 << 30)
        return (try commit(file: "vda.raw.lzo", bytes: stored, raw: Int64(image.count), chunks: nil), image)
    }

    func commit(file: String, bytes: [UInt8], raw: Int64, chunks: Int?) throws -> ImageExport {
        let backups = BackupStore(storage: storage)
        let partial = try backups.beginBackup(vm: "vm1", id: "20261101T000000Z")
        try Files.replaceFile(partial + "/" + file, contents: bytes)
        let image = Manifest.StoredImage(
            target: "vda", source: "/images/vm1.raw", kind: .file, format: .raw, file: file, rawBytes: raw,
            storedBytes: Int64(bytes.count), storedCksum: 0,
            storedSHA256: try FileDigest.sha256(ofFile: partial + "/" + file).digest,
            chunks: chunks.map {
                Manifest.ChunkedImage(chunks: $0, zeroChunks: 1, newChunks: 2, newStoredBytes: 0, wireBytes: 0)
            })
        let manifest = Manifest(
            vm: "vm1", id: "20261101T000000Z", host: "kvm1", mode: .cold, requestedMode: .cold, modeNote: nil,
            priorState: .running, compression: .lzop, started: "x", finished: "x", durationSeconds: 1,
            downtimeSeconds: 1, disks: [image], excluded: [], ramState: nil, domainXML: "<domain/>", keptOnHost: false,
            sequence: 1, store: chunks == nil ? nil : .chunks)
        let path = try backups.commit(manifest, partial: partial)
        return ImageExport(
            backup: BackupRef(vm: "vm1", id: "20261101T000000Z", started: Date(), path: path), manifest: manifest)
    }

    enum Output: String, CaseIterable {
        /// `>> FILE`: O_APPEND, the file has bytes already.
        case appending
        /// `1<> FILE`: read-write without truncation, the file longer than the image.
        case overwriting
        /// `> FILE`: a new, empty file.
        case newFile
        /// `| ...`: a pipe.
        case pipe
    }

    /// Issue #19 item 4: an export into a stdout opened with O_APPEND wrote a wrong image with exit 0
    /// (the seeks over zero chunks did nothing: every chunk after the first zero one moved up); one
    /// into a file opened without truncation left its old bytes where zeros belong, and after the end.
    @Test(arguments: Output.allCases, [true, false])
    func theExportIsTheImageWhereverItGoes(_ output: Output, _ chunked: Bool) throws {
        let (export, image) = try chunked ? chunkBackup() : lzopBackup()
        let file = dir.path + "/out"
        var expected = image
        let fd: Int32
        switch output {
        case .appending:
            ChunkTestData.write(head, to: file)
            fd = open(file, O_WRONLY | O_APPEND)
            expected = head + image
        case .overwriting:
            ChunkTestData.write([UInt8](repeating: 0xFF, count: image.count + 12345), to: file)
            fd = open(file, O_RDWR)
        case .newFile:
            fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        case .pipe:
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            let reader = PipeDrain(fd: fds[0])
            try export.write("vda", to: fds[1], output: "stdout")
            close(fds[1])
            #expect(reader.finish() == expected)
            return
        }
        #expect(fd >= 0)
        try export.write("vda", to: fd, output: "stdout")
        close(fd)
        #expect(try Files.readRegularFileOrThrow(file, limit: 1 << 30) == expected, "\(output), chunked: \(chunked)")
    }
}

/// Reads a pipe to its end on a thread of its own (the writer would block on a full pipe).
final class PipeDrain: @unchecked Sendable {
    private var bytes: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
            close(fd)
            done.signal()
        }.start()
    }

    func finish() -> [UInt8] {
        done.wait()
        return bytes
    }
}
