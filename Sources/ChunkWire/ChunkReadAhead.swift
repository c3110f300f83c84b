import CChunkCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Reads and hashes a disk's chunks on threads of their own, ahead of the sender (ChunkSender): one
/// thread reads, `hashers` threads check for zeros and hash (in any order; the sender gets the chunks
/// in disk order), so the helper uses every core it is given while the sender compresses and writes.
/// Chunks travel in a fixed pool of buffers (`slot`s); the sender returns each slot with `release`
/// once it is done with it.
final class ChunkReadAhead: @unchecked Sendable {
    struct Item {
        let slot: Int
        let length: Int
        /// nil: the chunk is all zeros.
        let digest: ChunkDigest?
    }

    enum Next {
        case chunk(Item)
        case end
        case failed(errno: Int32)
    }

    let pool: [UnsafeMutableRawBufferPointer]
    let source: Int32
    let chunkSize: Int
    let hashers: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var free: [Int]
    /// Read, not yet hashed: (sequence, slot, length).
    private var toHash: [(sequence: Int, slot: Int, length: Int)] = []
    /// Done, by sequence number; `nextOut` is the next the sender takes.
    private var results: [Int: Next] = [:]
    private var nextOut = 0
    private var readerDone = false
    private var stopped = false
    private var threads: [pthread_t] = []

    init(source: Int32, pool: [UnsafeMutableRawBufferPointer], chunkSize: Int, hashers: Int = 2) {
        self.source = source
        self.pool = pool
        self.chunkSize = chunkSize
        self.hashers = hashers
        free = Array(pool.indices)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func start() {
        spawn { $0.readAll() }
        for _ in 0..<hashers { spawn { $0.hashAll() } }
    }

    private final class Box {
        let body: (ChunkReadAhead) -> Void
        let owner: ChunkReadAhead
        init(_ owner: ChunkReadAhead, _ body: @escaping (ChunkReadAhead) -> Void) {
            self.owner = owner
            self.body = body
        }
    }

    private func spawn(_ body: @escaping (ChunkReadAhead) -> Void) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Box(self, body)).toOpaque()
        pthread_create(
            &thread, nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.body(box.owner)
                return nil
            }, context)
        threads.append(thread)
    }

    /// The next chunk in disk order (blocks until it is read and hashed), the end, or a read error.
    func next() -> Next {
        locked {
            while results[nextOut] == nil { pthread_cond_wait(cond, mutex) }
            let next = results.removeValue(forKey: nextOut)!
            nextOut += 1
            return next
        }
    }

    func release(_ slot: Int) {
        locked {
            free.append(slot)
            pthread_cond_broadcast(cond)
        }
    }

    /// After the end: waits for the threads. (On an error the process exits instead: a reader
    /// blocked on a source that stalled must not keep it.)
    func join() {
        locked {
            stopped = true
            pthread_cond_broadcast(cond)
        }
        for thread in threads { pthread_join(thread, nil) }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    private func readAll() {
        var sequence = 0
        defer {
            locked {
                readerDone = true
                pthread_cond_broadcast(cond)
            }
        }
        while true {
            let slot: Int? = locked {
                while free.isEmpty && !stopped { pthread_cond_wait(cond, mutex) }
                return stopped ? nil : free.removeLast()
            }
            guard let slot else { return }
            var disk = FileDescriptorSource(fd: source)
            let n: Int
            do {
                n = try WireIO.readFully(&disk, into: pool[slot])
            } catch {
                var e = EIO
                if case WireError.io(_, let code) = error { e = code }
                let failed = sequence
                locked { publish(.failed(errno: e), at: failed) }
                return
            }
            let current = sequence
            sequence += 1
            if n == 0 {
                release(slot)
                locked { publish(.end, at: current) }
                return
            }
            locked {
                toHash.append((current, slot, n))
                pthread_cond_broadcast(cond)
            }
            if n < chunkSize {
                let end = sequence
                locked { publish(.end, at: end) }
                return
            }
        }
    }

    private func publish(_ next: Next, at sequence: Int) {
        results[sequence] = next
        pthread_cond_broadcast(cond)
    }

    private func hashAll() {
        while true {
            let work: (sequence: Int, slot: Int, length: Int)? = locked {
                while toHash.isEmpty && !readerDone && !stopped { pthread_cond_wait(cond, mutex) }
                return toHash.isEmpty ? nil : toHash.removeFirst()
            }
            guard let work else { return }
            let content = UnsafeRawBufferPointer(rebasing: pool[work.slot][0..<work.length])
            let zero = bvm_all_zero(content.baseAddress, work.length) != 0
            let item = Item(slot: work.slot, length: work.length, digest: zero ? nil : ChunkDigest(of: content))
            locked { publish(.chunk(item), at: work.sequence) }
        }
    }
}
