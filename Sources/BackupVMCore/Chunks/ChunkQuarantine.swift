import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A chunk found damaged (truncated, bit-flipped: it no longer decompresses to content with its
/// digest) is moved aside into `.chunks/.quarantine/HEX.zst.TIME`, never deleted by the tool: an
/// operator may want to look at it. Out of the store, it is never answered "known" again: the next
/// backup that needs the content sends it again, and the store is whole again for every backup that
/// names it. Meanwhile every committed backup whose index names the chunk is recorded as bad in its
/// verify record (so `status`, `report` and the metrics do not count it as good, and `list` says why).
///
/// The move holds the store's commit lock exclusively: a backup commits (checks that every chunk it
/// names is in the store, then renames its directory into place) under the same lock shared, so it
/// either commits before the move (and is then found and marked) or finds the chunk gone and fails.
struct ChunkQuarantine {
    let store: ChunkStore

    var root: String { store.quarantineRoot }

    /// Moves the chunk aside and marks the backups that name it; returns where it went (nil: it was
    /// not there any more, or could not be moved: the error is logged by the caller's message).
    @discardableResult
    func quarantine(_ digest: ChunkDigest, why: String, now: Date = Date()) -> String? {
        let target = root + "/" + digest.hex + ".zst." + Timestamps.compact(now)
        do {
            try Files.makeDirectory(root, mode: 0o700)
            let lock = try FileLock.acquire(store.commitLockPath, shared: false)
            defer { lock.release() }
            guard rename(store.chunkPath(digest), target) == 0 else { return nil }
        } catch {
            return nil
        }
        markBackups(naming: digest, problem: "chunk \(digest.hex) is damaged (\(why)); moved to \(target)")
        return target
    }

    /// Every committed backup that names the chunk gets a verify record saying so. Reporting: a backup
    /// directory that cannot be read is left as it is.
    func markBackups(naming digest: ChunkDigest, problem: String) {
        let storage = (store.root as NSString).deletingLastPathComponent
        guard let all = try? BackupIndexWalk(storage: storage).indexes() else { return }
        for (dir, digests) in all where digests.contains(digest) {
            let name = (dir as NSString).lastPathComponent
            guard Timestamps.parseCompact(Substring(name)) != nil else { continue }  // partial: not a backup yet
            let vm = ((dir as NSString).deletingLastPathComponent as NSString).lastPathComponent
            let ref = BackupRef(vm: vm, id: name, started: Timestamps.parseCompact(Substring(name))!, path: dir)
            BackupVerifier.recordDamage(problem, for: ref)
        }
    }

    /// The chunks in quarantine (for store-stats).
    func count() -> Int { ((try? Files.entries(root)) ?? []).count }
}
