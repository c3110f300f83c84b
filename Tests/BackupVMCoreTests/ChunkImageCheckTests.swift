import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// The check a restore and verify make of a chunk image before anything is written.
@Suite(.tags(.unit))
struct ChunkImageCheckTests {
    /// Issue #19 item 16: the check looked up each chunk's position with `firstIndex(of:)`, quadratic
    /// in the number of distinct chunks (a 2 TiB disk: ~10^11 comparisons before a restore wrote a
    /// byte; 200,000 entries took minutes). Now one pass: 200,000 distinct chunks, all missing, are each
    /// named once. (The time limit only stops a run that hangs; the quadratic check needs minutes here.)
    @Test(.timeLimit(.minutes(1)))
    func twoHundredThousandChunksAreCheckedInOnePass() throws {
        let dir = TempDir("imagecheck")
        let storage = dir.path + "/storage"
        let backup = storage + "/vm1/20261101T000000Z"
        try Files.makeDirectory(backup, mode: 0o700)
        let count = 200_000
        var entries: [ChunkIndex.Entry] = []
        entries.reserveCapacity(count)
        for i in 0..<count {
            var seed = UInt64(i)
            let d = withUnsafeBytes(of: &seed) { ChunkDigest(of: $0) }
            entries.append(.chunk(d))
        }
        let index = ChunkIndex(size: Int64(count) * Int64(ChunkFormat.chunkSize), entries: entries)
        let bytes = index.serialized()
        try Files.replaceFile(backup + "/vda.index", contents: bytes)
        let image = Manifest.StoredImage(
            target: "vda", source: "/images/vm1.raw", kind: .file, format: .raw, file: "vda.index",
            rawBytes: index.size, storedBytes: Int64(bytes.count), storedCksum: 0, storedSHA256: "",
            chunks: Manifest.ChunkedImage(chunks: count, zeroChunks: 0, newChunks: 0, newStoredBytes: 0, wireBytes: 0))
        let problems = ChunkImageCheck(store: ChunkStore(storage: storage)).problems(
            indexFile: backup + "/vda.index", image: image)
        #expect(problems.count == count)
        #expect(problems.allSatisfy { $0.contains("is missing from the chunk store") })
    }
}
