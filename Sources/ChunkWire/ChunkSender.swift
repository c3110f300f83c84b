import CChunkCodec

#if canImport(Glibc)
    import Glibc
#endif

/// The hypervisor side of a chunked transfer (run by `bvm-chunk-helper send`): reads a disk's content
/// in fixed chunks, hashes each, tells the server the digest, and sends the chunk (one zstd frame)
/// only when the server answers that it lacks it. All-zero chunks are announced by length only.
///
/// Up to `ChunkFormat.window` chunks wait for their answers while the next ones are read and hashed
/// (on threads of their own: ChunkReadAhead), so neither a round trip to the server nor compression
/// stalls the disk; memory stays at (window + 4) chunks plus one compression buffer. On an error the
/// buffers are left to the process's exit (the reader may still be blocked on the disk).
public struct ChunkSender {
    public struct Totals: Equatable, Sendable {
        public var bytes: UInt64 = 0
        public var chunks: UInt64 = 0
        public var zeroChunks: UInt64 = 0
        public var sentChunks: UInt64 = 0
        public var sentBytes: UInt64 = 0
    }

    let source: Int32
    let answers: Int32
    let output: Int32
    let level: Int32
    let chunkSize: Int
    let window: Int

    public init(
        source: Int32, answers: Int32, output: Int32, level: Int32 = ChunkFormat.defaultLevel,
        chunkSize: Int = ChunkFormat.chunkSize, window: Int = ChunkFormat.window
    ) {
        self.source = source
        self.answers = answers
        self.output = output
        self.level = level
        self.chunkSize = chunkSize
        self.window = window
    }

    public enum SendError: Error, CustomStringConvertible {
        case serverClosed
        case badAnswer(UInt8)
        case compression
        case source(errno: Int32)

        public var description: String {
            switch self {
            case .serverClosed: return "the server closed the connection before answering every digest"
            case .badAnswer(let b): return "unexpected answer byte \(b) from the server (expected N or K)"
            case .compression: return "zstd could not compress a chunk"
            case .source(let e): return "reading the disk failed (errno \(e): \(String(cString: strerror(e))))"
            }
        }
    }

    /// Sends the whole source; on a read error of the disk it sends a failure frame (so the server
    /// reports the reason) and throws.
    public func run() throws -> Totals {
        let session = SendSession(self)
        try session.run()
        return session.totals
    }
}

/// One transfer's state on the hypervisor: the buffers, the chunks waiting for answers, the totals.
private final class SendSession {
    let sender: ChunkSender
    let pool: [UnsafeMutableRawBufferPointer]
    let frame: UnsafeMutableRawBufferPointer
    let ahead: ChunkReadAhead
    var pending: [(digest: ChunkDigest, buffer: Int, length: Int)] = []
    var totals = ChunkSender.Totals()

    init(_ sender: ChunkSender) {
        self.sender = sender
        // window chunks wait for answers, two are hashed, one is read, one is ready: window + 4 buffers.
        pool = (0..<(sender.window + 4)).map { _ in
            UnsafeMutableRawBufferPointer.allocate(byteCount: sender.chunkSize, alignment: 4096)
        }
        let capacity = FrameCodec.headerSize + ChunkDigest.byteCount + Int(bvm_zstd_bound(sender.chunkSize))
        frame = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        ahead = ChunkReadAhead(source: sender.source, pool: pool, chunkSize: sender.chunkSize)
    }

    func write(_ bytes: [UInt8]) throws { try WireIO.writeAll(sender.output, bytes) }

    func run() throws {
        let size = UInt32(sender.chunkSize)
        try write(FrameCodec.encode(.hello(version: ChunkFormat.protocolVersion, chunkSize: size)))
        ahead.start()
        loop: while true {
            switch ahead.next() {
            case .end:
                break loop
            case .failed(let e):
                try? write(FrameCodec.encode(.failure(ChunkSender.SendError.source(errno: e).description)))
                throw ChunkSender.SendError.source(errno: e)
            case .chunk(let item):
                totals.bytes += UInt64(item.length)
                totals.chunks += 1
                guard let digest = item.digest else {
                    ahead.release(item.slot)
                    totals.zeroChunks += 1
                    try write(FrameCodec.encode(.zero(length: UInt32(item.length))))
                    continue
                }
                try write(FrameCodec.encode(.digest(digest, length: UInt32(item.length))))
                pending.append((digest, item.slot, item.length))
                while pending.count >= sender.window { try answerOldest() }
                while !pending.isEmpty && answerReady() { try answerOldest() }
            }
        }
        while !pending.isEmpty { try answerOldest() }
        try write(FrameCodec.encode(.end(totalBytes: totals.bytes, chunks: totals.chunks)))
        ahead.join()
        for buffer in pool { buffer.deallocate() }
        frame.deallocate()
    }

    func answerReady() -> Bool {
        var p = pollfd(fd: sender.answers, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    /// The server's answer to the oldest digest: the chunk goes out compressed, or is dropped.
    func answerOldest() throws {
        var byte: UInt8 = 0
        let n = try withUnsafeMutableBytes(of: &byte) { raw -> Int in
            var src = FileDescriptorSource(fd: sender.answers)
            return try src.read(into: raw)
        }
        guard n == 1 else { throw ChunkSender.SendError.serverClosed }
        let oldest = pending.removeFirst()
        defer { ahead.release(oldest.buffer) }
        switch ServerAnswer(rawValue: byte) {
        case .known: return
        case .need: try send(oldest.digest, pool[oldest.buffer], length: oldest.length)
        case nil: throw ChunkSender.SendError.badAnswer(byte)
        }
    }

    func send(_ digest: ChunkDigest, _ buffer: UnsafeMutableRawBufferPointer, length: Int) throws {
        let offset = FrameCodec.headerSize + ChunkDigest.byteCount
        let size = bvm_zstd_compress(
            frame.baseAddress! + offset, frame.count - offset, buffer.baseAddress, length, sender.level)
        guard size > 0 else { throw ChunkSender.SendError.compression }
        let payload = ChunkDigest.byteCount + size
        let head = FrameCodec.header(.chunk, length: payload) + digest.bytes
        head.withUnsafeBytes { frame.copyMemory(from: $0) }
        try WireIO.writeAll(
            sender.output, UnsafeRawBufferPointer(rebasing: frame[0..<(FrameCodec.headerSize + payload)]))
        totals.sentChunks += 1
        totals.sentBytes += UInt64(size)
    }
}
