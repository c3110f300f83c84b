import CChunkCodec

#if canImport(Glibc)
    import Glibc
#endif

/// Reads and hashes a disk's chunks on a thread of its own, ahead of the sender (ChunkSender): while
/// the sender compresses and writes one chunk, the next ones are read and hashed, so the helper uses
/// two cores where it has them. Chunks travel in a fixed pool of buffers (`slot`s); the sender
/// returns each slot with `release` once it is done with it.
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
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var free: [Int]
    private var ready: [Next] = []
    private var stopped = false
    private var finished = false
    private var thread = pthread_t()

    init(source: Int32, pool: [UnsafeMutableRawBufferPointer], chunkSize: Int) {
        self.source = source
        self.pool = pool
        self.chunkSize = chunkSize
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
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<ChunkReadAhead>.fromOpaque(raw!).takeRetainedValue()
                me.readAll()
                return nil
            }, context)
    }

    /// The next chunk in disk order (blocks until it is read and hashed), the end, or a read error.
    func next() -> Next {
        locked {
            while ready.isEmpty { pthread_cond_wait(cond, mutex) }
            return ready.removeFirst()
        }
    }

    func release(_ slot: Int) {
        locked {
            free.append(slot)
            pthread_cond_broadcast(cond)
        }
    }

    /// After the end: waits for the reader. (On an error the process exits instead: a reader blocked
    /// on a source that stalled must not keep it.)
    func join() {
        locked {
            stopped = true
            pthread_cond_broadcast(cond)
        }
        pthread_join(thread, nil)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    private func readAll() {
        while true {
            let slot: Int? = locked {
                while free.isEmpty && !stopped { pthread_cond_wait(cond, mutex) }
                return stopped ? nil : free.removeLast()
            }
            guard let slot else { return }
            var disk = FileDescriptorSource(fd: source)
            let result: Next
            do {
                let n = try WireIO.readFully(&disk, into: pool[slot])
                if n == 0 {
                    release(slot)
                    result = .end
                } else {
                    let content = UnsafeRawBufferPointer(rebasing: pool[slot][0..<n])
                    let zero = bvm_all_zero(content.baseAddress, n) != 0
                    result = .chunk(Item(slot: slot, length: n, digest: zero ? nil : ChunkDigest(of: content)))
                }
            } catch WireError.io(_, let e) {
                result = .failed(errno: e)
            } catch {
                result = .failed(errno: EIO)
            }
            let last: Bool = {
                switch result {
                case .chunk(let item): return item.length < chunkSize
                case .end, .failed: return true
                }
            }()
            locked {
                ready.append(result)
                if last, case .chunk = result { ready.append(.end) }
                pthread_cond_broadcast(cond)
            }
            if last { return }
        }
    }
}
