import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which chunks were read and found good, and when: `.chunks/.verified/YYYYMMDD`, one file a day,
/// 32 raw bytes per chunk. A scheduled verification (VerifyEveryDays) does not read again a chunk
/// verified within that many days, so each chunk is read at most once per period however many backups
/// and VMs share it: the work of a night is bounded by the store's size divided by the period, plus
/// what was added since (docs/chunk-store.md). What cannot be read here only means more is read.
struct ChunkVerifiedLog {
    let store: ChunkStore

    var root: String { store.root + "/.verified" }

    /// Logs older than this are removed (longer than any VerifyEveryDays).
    static let keepDays = 400

    /// Chunks found good within the last `days` days.
    func verified(within days: Int, now: Date = Date()) -> Set<ChunkDigest> {
        guard days > 0 else { return [] }
        var found = Set<ChunkDigest>()
        for name in (try? Files.entries(root)) ?? [] {
            guard let day = Self.day(name), now.timeIntervalSince(day) < Double(days) * 86400 else { continue }
            guard let bytes = try? Files.readRegularFileOrThrow(root + "/" + name, limit: 1 << 30) else { continue }
            let whole = bytes.count - bytes.count % ChunkDigest.byteCount
            for i in stride(from: 0, to: whole, by: ChunkDigest.byteCount) {
                found.insert(ChunkDigest(bytes: Array(bytes[i..<(i + ChunkDigest.byteCount)]))!)
            }
        }
        return found
    }

    /// Adds chunks just read and found good to today's log, and removes logs too old to matter.
    func record(_ digests: [ChunkDigest], now: Date = Date()) {
        guard !digests.isEmpty, (try? Files.makeDirectory(root, mode: 0o700)) != nil else { return }
        let path = root + "/" + String(Timestamps.compact(now).prefix(8))
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = try? Files.writeAll(fd, digests.flatMap(\.bytes), path: path)
        for name in (try? Files.entries(root)) ?? [] {
            if let day = Self.day(name), now.timeIntervalSince(day) > Double(Self.keepDays) * 86400 {
                unlink(root + "/" + name)
            }
        }
    }

    static func day(_ name: String) -> Date? { Timestamps.parseCompact(Substring(name + "T000000Z")) }
}
