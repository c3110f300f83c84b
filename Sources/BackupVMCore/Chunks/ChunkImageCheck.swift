import ChunkWire
import Foundation

/// Checks a chunk image against the store: its index parses (its own checksum included) and says the
/// manifest's size, and every chunk it names is there and decompresses to content with its digest.
/// One checker may check several images (or backups): each distinct chunk is read once, and what was
/// found damaged is remembered by digest.
final class ChunkImageCheck {
    let store: ChunkStore
    /// Raised: the check ends before the next chunk (a restore that no longer waits for it).
    let stop: AbortFlag?
    private var good: Set<ChunkDigest>
    private(set) var damaged: [ChunkDigest: String] = [:]
    /// Chunks read and found good by this check (not those it was told to trust).
    private(set) var readGood: [ChunkDigest] = []

    /// `trusted`: chunks not to read again (found good recently, ChunkVerifiedLog).
    init(store: ChunkStore, trusted: Set<ChunkDigest> = [], stop: AbortFlag? = nil) {
        self.store = store
        self.stop = stop
        good = trusted
    }

    /// What was read and found good since the last call (for ChunkVerifiedLog).
    func takeReadGood() -> [ChunkDigest] {
        defer { readGood = [] }
        return readGood
    }

    /// The image's problems, each a line naming the file (empty: it restores).
    func problems(indexFile path: String, image: Manifest.StoredImage) -> [String] {
        let index: ChunkIndex
        do {
            guard let bytes = Files.readRegularFile(path, limit: 1 << 30) else { return ["\(path): missing"] }
            index = try ChunkIndex.parse(bytes, file: path)
        } catch {
            return ["\(error)"]
        }
        guard index.size == image.rawBytes else {
            return ["\(path): the index holds \(index.size) bytes; the manifest says \(image.rawBytes)"]
        }
        var found: [String] = []
        // One pass in index order (linear in the index: a chunk's position gives its length), each
        // distinct chunk read once.
        for (i, entry) in index.entries.enumerated() {
            if stop?.isRaised == true { return found + ["\(path): the check was stopped"] }
            guard case .chunk(let digest) = entry, !good.contains(digest) else { continue }
            if let known = damaged[digest] {
                found.append(known)
                continue
            }
            do {
                _ = try store.read(digest, length: index.length(of: i))
                good.insert(digest)
                readGood.append(digest)
            } catch {
                damaged[digest] = "\(error)"
                found.append("\(error)")
            }
        }
        return found
    }
}

extension ChunkStore {
    /// The store of a backup file's storage folder (`BackupStorage/VM/ID/FILE`).
    static func of(backupFile path: String) -> ChunkStore {
        let id = (path as NSString).deletingLastPathComponent
        let vm = (id as NSString).deletingLastPathComponent
        return ChunkStore(storage: (vm as NSString).deletingLastPathComponent)
    }
}
