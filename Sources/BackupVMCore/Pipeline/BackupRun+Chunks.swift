import ChunkWire
import Foundation

/// Store=chunks: this job's helper and its staging directory in the chunk store.
final class ChunkSession {
    let helper: ChunkHelper
    let staging: ChunkStaging
    /// Every chunk the job's indexes name: each must be in the store when the backup is committed.
    var referenced = Set<ChunkDigest>()

    init(helper: ChunkHelper, staging: ChunkStaging) {
        self.helper = helper
        self.staging = staging
    }
}

/// The chunk store's side of the copying stages: each disk goes through the hypervisor's helper into
/// this job's staging directory and leaves an index in the partial backup directory. The staged chunks
/// join the store in `commit`, before the manifest: an index is never visible before its chunks.
extension BackupRun {
    /// Before the VM is touched: the helper must exist here (a missing one fails the job at once) and
    /// the staging directory is made.
    func startChunkSession() throws {
        guard storeFormat == .chunks else { return }
        let helper = try ChunkHelper.load(path: chunkHelperPath)
        let staging = try ChunkStore(storage: store.layout.storage).staging(
            for: ChunkStore.stagingName(vm: plan.vm, id: plan.id))
        chunkSession = ChunkSession(helper: helper, staging: staging)
        if plan.keepOnHost {
            log.notice("the schedule asks to keep a copy on the hypervisor; with Store=chunks none is kept")
        }
    }

    /// One disk into the chunk store: `source` read by the helper on the hypervisor.
    func storeChunked(_ disk: DomainDisk, from source: ImageSource, volume: String?, content: DomainDisk.Format?)
        throws
    {
        guard let session = chunkSession else { return }
        if abort.isRaised { throw PipelineError.aborted }
        let t0 = Date()
        let receipt = try hypervisor.sendChunks(
            source, helper: session.helper, workPath: plan.work.workPath, scratch: plan.stagingDirectory,
            into: session.staging, abort: abort)
        session.referenced.formUnion(receipt.index.digests)
        let file = BackupNames.chunkIndex(target: disk.target)
        let bytes = receipt.index.serialized()
        try Files.replaceFile(partial + "/" + file, contents: bytes)
        var crc = POSIXChecksum()
        crc.update(bytes)
        images[disk.target] = Manifest.StoredImage(
            target: disk.target, source: disk.source, kind: disk.kind, format: disk.format, file: file,
            rawBytes: receipt.index.size, storedBytes: Int64(bytes.count), storedCksum: crc.finalize(),
            storedSHA256: bytes.withUnsafeBytes { ChunkDigest(of: $0) }.hex, volume: volume,
            content: content,
            chunks: Manifest.ChunkedImage(
                chunks: receipt.index.entries.count, zeroChunks: receipt.zeroChunks, newChunks: receipt.newChunks,
                newStoredBytes: receipt.newStoredBytes, wireBytes: receipt.wireBytes))
        log.info(
            "disk stored in the chunk store",
            metadata: [
                "disk": "\(disk.target)", "from": "\(source)", "raw_bytes": "\(receipt.index.size)",
                "chunks": "\(receipt.index.entries.count)", "new_chunks": "\(receipt.newChunks)",
                "zero_chunks": "\(receipt.zeroChunks)", "new_bytes": "\(receipt.newStoredBytes)",
                "wire_bytes": "\(receipt.wireBytes)",
                "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(t0)))",
            ])
    }

    /// The staged chunks join the store (durably) before the manifest makes the backup visible, and the
    /// backup becomes visible only if every chunk it names is in the store then (ChunkStaging.publish).
    func commitChunked(_ manifest: Manifest) throws -> String {
        guard let session = chunkSession else { return try store.commit(manifest, partial: partial) }
        try session.staging.commit()
        return try session.staging.publish(referencing: session.referenced) {
            try store.commit(manifest, partial: partial)
        }
    }
}

extension ChunkStore {
    /// A job's staging directory name: `VM.ID` (one job per VM runs at a time).
    public static func stagingName(vm: String, id: String) -> String { "\(vm).\(id)" }
}
