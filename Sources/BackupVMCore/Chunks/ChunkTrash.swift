import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where a garbage collection moves the chunks it is about to remove (`.chunks/.trash/`), so that it
/// can look once more, after they are out of reach, whether a running backup named one of them
/// meanwhile, and put those back (ChunkCollector). Only a collection that holds `.gc.lock` uses it;
/// what a collection that died left there goes back into the store (`restoreAll`).
struct ChunkTrash {
    let store: ChunkStore

    var root: String { store.trashRoot }
    func path(_ digest: ChunkDigest) -> String { root + "/" + digest.hex + ".zst" }

    /// Moves a chunk out of the store; false when it was not there (or could not be moved).
    func take(_ digest: ChunkDigest) throws -> Bool {
        try Files.makeDirectory(root, mode: 0o700)
        if rename(store.chunkPath(digest), path(digest)) == 0 { return true }
        if errno == ENOENT { return false }
        throw SystemError("rename into the trash", path: store.chunkPath(digest))
    }

    /// Puts a chunk back into the store.
    func putBack(_ digest: ChunkDigest) throws {
        let target = store.chunkPath(digest)
        try Files.makeDirectory((target as NSString).deletingLastPathComponent, mode: 0o700)
        guard rename(path(digest), target) == 0 else { throw SystemError("rename back from the trash", path: target) }
    }

    /// Removes what is in the trash for good; the bytes freed.
    func empty() -> (count: Int, bytes: Int64) {
        var count = 0
        var bytes: Int64 = 0
        for name in (try? Files.entries(root)) ?? [] {
            var st = stat()
            let p = root + "/" + name
            guard lstat(p, &st) == 0, unlink(p) == 0 else { continue }
            count += 1
            bytes += Int64(st.st_size)
        }
        rmdir(root)
        return (count, bytes)
    }

    /// Everything in the trash back into the store (a collection died between its moves and its
    /// removals). Returns how many chunks went back.
    @discardableResult
    func restoreAll() -> Int {
        var restored = 0
        for name in (try? Files.entries(root)) ?? [] {
            guard name.hasSuffix(".zst"), let digest = ChunkDigest(hex: name.dropLast(4)) else { continue }
            if (try? putBack(digest)) != nil { restored += 1 }
        }
        rmdir(root)
        return restored
    }
}
