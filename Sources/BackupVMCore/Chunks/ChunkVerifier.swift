import ChunkWire
import Foundation

/// Checks and stages the chunks of one stream on a thread of its own, while the receiver reads the
/// next frames: each chunk is decompressed (one zstd frame of exactly its length), hashed against its
/// digest and only then written into the staging directory. At most `limit` chunks wait, so memory
/// stays bounded. The first failure is kept and reported by the next `submit` or by `finish`.
final class ChunkVerifier: @unchecked Sendable {
    struct Work {
        let digest: ChunkDigest
        let frame: [UInt8]
        let length: Int
        let chunk: Int
        let offset: Int64
    }

    private let staging: ChunkStaging
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var running = false
    private var failure: Error?
    private let limit: Int
    private var content = [UInt8](repeating: 0, count: ChunkFormat.chunkSize)

    init(staging: ChunkStaging, limit: Int = 4) {
        self.staging = staging
        self.limit = limit
    }

    /// Queues a chunk; throws the first failure found so far instead.
    func submit(_ work: Work) throws {
        condition.lock()
        defer { condition.unlock() }
        while queue.count >= limit && failure == nil { condition.wait() }
        if let failure { throw failure }
        queue.append(work)
        if !running {
            running = true
            Thread { [self] in drain() }.start()
        }
        condition.broadcast()
    }

    /// Waits until every queued chunk is checked and staged; returns the first failure, if any.
    func finish() -> Error? {
        condition.lock()
        defer { condition.unlock() }
        while running { condition.wait() }
        return failure
    }

    private func drain() {
        while true {
            condition.lock()
            guard failure == nil, !queue.isEmpty else {
                queue = []
                running = false
                condition.broadcast()
                condition.unlock()
                return
            }
            let work = queue[0]
            condition.unlock()
            let error = check(work)
            condition.lock()
            queue.removeFirst()
            if let error, failure == nil { failure = error }
            condition.broadcast()
            condition.unlock()
        }
    }

    private func check(_ w: Work) -> Error? {
        let verdict = content.withUnsafeMutableBytes { out in
            w.frame.withUnsafeBytes { ChunkContent.check(frame: $0, length: w.length, digest: w.digest, into: out) }
        }
        switch verdict {
        case .notAFrame: return ChunkTransferError.badFrame(chunk: w.chunk, offset: w.offset, expectedBytes: w.length)
        case .wrongDigest: return ChunkTransferError.digestMismatch(chunk: w.chunk, offset: w.offset, digest: w.digest)
        case .ok: break
        }
        do { try w.frame.withUnsafeBytes { try staging.write(w.digest, frame: $0) } } catch { return error }
        return nil
    }
}
