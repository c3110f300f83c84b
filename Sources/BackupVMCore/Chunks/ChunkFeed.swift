import CChunkCodec
import CShims
import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A chunk image as one zstd stream, written by a thread of its own into a pipe (the stdin of a
/// restore's ssh): each chunk's stored frame as it is (concatenated zstd frames are one valid zstd
/// stream), and for each all-zero chunk a frame made here. The hypervisor's `zstd -d` checks every
/// frame's content checksum; the chunks have been checked against their digests before (StoredImageCheck).
final class ChunkFeed: @unchecked Sendable {
    let index: ChunkIndex
    let store: ChunkStore
    let progress = ProgressCounter()
    private let done = DispatchSemaphore(value: 0)
    private var failure: Error?

    init(index: ChunkIndex, store: ChunkStore) {
        self.index = index
        self.store = store
    }

    /// Starts the writer; returns the pipe's read end (the caller closes it).
    func start() throws -> Int32 {
        var fds: [Int32] = [0, 0]
        guard bvm_pipe_cloexec(&fds) == 0 else { throw ProcessError.pipe(reason: String(cString: strerror(errno))) }
        _ = fcntl(fds[1], 1031, Int32(1 << 20))
        let writeEnd = fds[1]
        CommandSupport.ignoreBrokenPipes()
        let thread = Thread { [self] in
            do { try self.write(into: writeEnd) } catch { self.failure = error }
            close(writeEnd)
            self.done.signal()
        }
        thread.start()
        return fds[0]
    }

    /// Waits for the writer; throws what stopped it (a reader that went away shows as EPIPE, which
    /// the command's own failure explains better: the caller reports that first).
    func finish() throws {
        done.wait()
        done.signal()
        if let failure { throw failure }
    }

    private func write(into fd: Int32) throws {
        var zeroFrames: [Int: [UInt8]] = [:]
        for (i, entry) in index.entries.enumerated() {
            let frame: [UInt8]
            switch entry {
            case .chunk(let digest):
                frame = try store.readFrame(digest)
            case .zero:
                let length = index.length(of: i)
                if zeroFrames[length] == nil {
                    let zeros = [UInt8](repeating: 0, count: length)
                    var out = [UInt8](repeating: 0, count: bvm_zstd_bound(length))
                    let n = out.withUnsafeMutableBytes { o in
                        zeros.withUnsafeBytes { bvm_zstd_compress(o.baseAddress, o.count, $0.baseAddress, length, 1) }
                    }
                    zeroFrames[length] = Array(out[0..<n])
                }
                frame = zeroFrames[length]!
            }
            try frame.withUnsafeBytes { try WireIO.writeAll(fd, $0) }
            progress.add(frame.count)
        }
    }
}
