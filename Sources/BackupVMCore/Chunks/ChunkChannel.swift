import CShims
import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the sending side of a chunked transfer as a child process (`ssh HOST 'bvm-chunk-helper send
/// …'` in a job; the helper itself in tests) and the receiver on its two streams: the helper's frames
/// on its stdout, our answers into its stdin. The command's limits apply as to any disk stream: no
/// byte for `stall` seconds, or an abort, ends it.
public enum ChunkChannel {
    /// The receipt and what the sender said on stderr (a remote script's trailer).
    public static func receive(
        _ argv: [String], staging: ChunkStaging, expectedSize: Int64?, limits: CommandLimits
    ) throws -> (receipt: ChunkReceipt, stderr: String) {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard bvm_pipe_cloexec(&toChild) == 0 else { throw ProcessError.pipe(reason: String(cString: strerror(errno))) }
        guard bvm_pipe_cloexec(&fromChild) == 0 else {
            close(toChild[0])
            close(toChild[1])
            throw ProcessError.pipe(reason: String(cString: strerror(errno)))
        }
        _ = fcntl(fromChild[0], 1031, Int32(1 << 20))  // F_SETPIPE_SZ: fewer, larger reads
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess(argv, stdin: toChild[0], stdout: fromChild[1])
        } catch {
            for fd in toChild + fromChild { close(fd) }
            throw error
        }
        close(toChild[0])
        close(fromChild[1])
        defer { close(fromChild[0]) }
        var answersOpen = true
        defer { if answersOpen { close(toChild[1]) } }
        // A helper or ssh that exits early must give us EPIPE on the next answer, not kill us.
        CommandSupport.ignoreBrokenPipes()

        var source = LimitedSource(fd: fromChild[0], watch: LimitWatch(limits, stdin: nil))
        var answers = LimitedAnswers(fd: toChild[1], watch: LimitWatch(limits, stdin: nil))
        let receipt: ChunkReceipt
        do {
            receipt = try ChunkReceiver(staging: staging, expectedSize: expectedSize)
                .receive(from: &source, answers: &answers)
        } catch let cut as LimitedSource.Cut {
            child.stop()
            throw ProcessError.cut(program: argv[0], cut.cut, stderr: child.stderr)
        } catch {
            close(toChild[1])
            answersOpen = false
            // A sender that failed on its own (ssh could not connect, the helper was missing) explains
            // the broken stream better than the stream does: wait a moment for its exit status.
            let deadline = Date().addingTimeInterval(2)
            while child.poll() == nil && Date() < deadline { usleep(10_000) }
            let status = child.poll()
            child.stop()
            throw ChunkChannelError(transfer: error, program: argv[0], stderr: child.stderr, status: status)
        }
        close(toChild[1])
        answersOpen = false
        var watch = LimitWatch(limits, stdin: nil)
        if let cut = watch.waitForExit(of: child) {
            child.stop()
            throw ProcessError.cut(program: argv[0], cut, stderr: child.stderr)
        }
        let status = child.wait()
        guard status == 0 else {
            throw ChunkChannelError(transfer: nil, program: argv[0], stderr: child.stderr, status: status)
        }
        return (receipt, child.stderr)
    }
}

/// A chunked transfer that failed: the receiver's reason (or the sender's exit status) and what the
/// sender said on stderr (the helper names its own failures there; ssh its connection's).
public struct ChunkChannelError: Error, CustomStringConvertible {
    public let transfer: Error?
    public let program: String
    public let stderr: String
    public var status: Int32? = nil

    public var description: String {
        // The sender's last word, not our scripts' trailer lines.
        let said =
            stderr.split(separator: "\n").last { !$0.hasPrefix("BACKUP_VM_") }.map {
                " (\(ReasonText.oneLine(String($0), limit: 300)))"
            } ?? ""
        if let transfer { return "\(transfer)\(said)" }
        return "\(program) exited with status \(status ?? -1)\(said)"
    }
}

/// Answers written into the sender's stdin under CommandLimits: a sender that stops reading them (its
/// pipe full) while it keeps the connection open is cut off after StallTimeout like one that stops
/// sending, never waited for forever.
struct LimitedAnswers: AnswerSink {
    let fd: Int32
    var watch: LimitWatch

    init(fd: Int32, watch: LimitWatch) {
        self.fd = fd
        self.watch = watch
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    mutating func send(_ answer: UInt8) throws {
        var byte = answer
        while true {
            let n = Glibc.write(fd, &byte, 1)
            if n == 1 {
                watch.progressed()
                return
            }
            guard n < 0, errno == EAGAIN || errno == EINTR else { throw WireError.io(operation: "write", errno: errno) }
            if let cut = watch.check() { throw LimitedSource.Cut(cut: cut) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 250)
        }
    }
}

/// A pipe read under CommandLimits: waits at most 250 ms at a time so that a stall or an abort is
/// noticed while the other side says nothing.
struct LimitedSource: ByteSource {
    struct Cut: Error { let cut: CommandCut }
    let fd: Int32
    var watch: LimitWatch

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            if let cut = watch.check() { throw Cut(cut: cut) }
            guard ProcessRunner.waitReadable(fd, milliseconds: watch.isUnlimited ? -1 : 250) else { continue }
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw WireError.io(operation: "read", errno: errno)
            }
            if n > 0 { watch.progressed() }
            return n
        }
    }
}
