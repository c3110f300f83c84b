import Crypto
import Foundation

/// SHA-256 and POSIX cksum of a stream, computed on a thread of their own so the thread that reads
/// ssh's pipe and writes the file never waits for hashing. Data is copied into a small ring of
/// fixed buffers (memory stays bounded: `slots` x `slotSize`); the reader blocks only when the hasher
/// is a whole ring behind.
public final class ConcurrentDigest: @unchecked Sendable {
    public struct Digest: Sendable, Equatable {
        public var sha256: String
        public var cksum: UInt32
        public var count: UInt64
    }

    private let slotSize: Int
    private let slots: [UnsafeMutableRawBufferPointer]
    private var lengths: [Int]
    private let free: DispatchSemaphore
    private let filled = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var writeSlot = 0
    private var writeFill = 0
    private var result: Digest?

    public init(slots count: Int = 8, slotSize: Int = 1 << 20) {
        self.slotSize = slotSize
        slots = (0..<count).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: slotSize, alignment: 64) }
        lengths = Array(repeating: 0, count: count)
        free = DispatchSemaphore(value: count - 1)  // the slot being filled is taken from the start
        let thread = Thread { [unowned self] in self.hashLoop() }
        thread.name = "digest"
        thread.start()
    }

    deinit { slots.forEach { $0.deallocate() } }

    /// Adds bytes; they are copied, so the caller may reuse its buffer at once.
    public func update(_ chunk: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < chunk.count {
            let n = min(slotSize - writeFill, chunk.count - offset)
            (slots[writeSlot].baseAddress! + writeFill).copyMemory(from: chunk.baseAddress! + offset, byteCount: n)
            writeFill += n
            offset += n
            if writeFill == slotSize { handOff() }
        }
    }

    private func handOff() {
        lengths[writeSlot] = writeFill
        filled.signal()
        free.wait()
        writeSlot = (writeSlot + 1) % slots.count
        writeFill = 0
    }

    /// Ends the stream and returns the digests. Must be called once the stream ends, also when it
    /// failed (the hashing thread waits for it); later calls return the same result.
    public func finalize() -> Digest {
        if let result { return result }
        if writeFill > 0 { handOff() }
        lengths[writeSlot] = -1  // end marker
        filled.signal()
        done.wait()
        return result!
    }

    private func hashLoop() {
        var sha = SHA256()
        var crc = POSIXChecksum()
        var slot = 0
        while true {
            filled.wait()
            let n = lengths[slot]
            if n < 0 { break }
            let data = UnsafeRawBufferPointer(rebasing: slots[slot][0..<n])
            sha.update(bufferPointer: data)
            crc.update(data)
            slot = (slot + 1) % slots.count
            free.signal()
        }
        result = Digest(sha256: sha.finalize().map { String(format: "%02x", $0) }.joined(), cksum: crc.finalize(), count: crc.count)
        done.signal()
    }
}
