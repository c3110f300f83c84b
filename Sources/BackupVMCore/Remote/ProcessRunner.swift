import CShims
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a finished local process left.
public struct ProcessOutcome: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs local programs (ssh, mostly). stdin is /dev/null unless the caller streams into it, so a
/// backgrounded `backup_vm NAME &` never stops on a terminal read. stderr is always collected (on a
/// thread of its own, so a chatty stderr cannot dead-lock a full stdout pipe).
public enum ProcessRunner {
    /// Runs to completion, collecting stdout (bounded to `limit` bytes).
    public static func run(_ argv: [String], limits: CommandLimits = .none, limit: Int = 16 << 20) throws(ProcessError)
        -> ProcessOutcome
    {
        var collected = [UInt8]()
        let (status, stderr) = try stream(argv, stdin: nil, limits: limits) { chunk in
            if collected.count < limit { collected.append(contentsOf: chunk.prefix(limit - collected.count)) }
            return true
        }
        return ProcessOutcome(status: status, stdout: String(decoding: collected, as: UTF8.self), stderr: stderr)
    }

    /// Runs `argv`, handing every chunk of its stdout to `sink` through one reused buffer; `sink`
    /// returns false to stop (the process is then killed). `stdin`, when given, is a file descriptor
    /// the child reads (e.g. a compressed image being restored). Returns the exit status and stderr.
    ///
    /// `limits` end the child (SIGTERM, then SIGKILL) and throw `.cut`: on its total time, on no
    /// progress (no stdout byte and, with `stdin`, no byte read from it: the child shares the
    /// descriptor's file offset) or on abort.
    public static func stream(
        _ argv: [String], stdin: Int32?, limits: CommandLimits = .none, bufferSize: Int = 1 << 20,
        sink: (UnsafeRawBufferPointer) throws -> Bool
    ) throws(ProcessError) -> (Int32, String) {
        var outPipe: [Int32] = [0, 0]
        guard bvm_pipe_cloexec(&outPipe) == 0 else { throw .pipe(reason: String(cString: strerror(errno))) }
        // A 1 MiB pipe (F_SETPIPE_SZ; best effort) lets ssh hand over more per read(2).
        _ = fcntl(outPipe[0], 1031, Int32(bufferSize))
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess(argv, stdin: stdin, stdout: outPipe[1])
        } catch {
            close(outPipe[0])
            close(outPipe[1])
            throw error
        }
        close(outPipe[1])
        defer { close(outPipe[0]) }
        var watch = LimitWatch(limits, stdin: stdin)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var sinkError: Error?
        var stopped = false
        while true {
            if let cut = watch.check() {
                child.stop()
                throw .cut(program: argv[0], cut, stderr: child.stderr)
            }
            guard waitReadable(outPipe[0], milliseconds: watch.isUnlimited ? -1 : 250) else { continue }
            let n = read(outPipe[0], buffer.baseAddress, bufferSize)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            watch.progressed()
            do {
                if try !sink(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) {
                    stopped = true
                    break
                }
            } catch {
                sinkError = error
                break
            }
        }
        if let sinkError {
            child.stop()
            throw .output(program: argv[0], reason: "\(sinkError)")
        }
        if stopped { child.terminate() }
        // stdout is closed: the child has exited or is about to; one that holds on (it closed stdout
        // early, or a shared ssh master keeps its stderr) is still under the limits.
        if let cut = watch.waitForExit(of: child) {
            child.stop()
            throw .cut(program: argv[0], cut, stderr: child.stderr)
        }
        return (child.wait(), child.stderr)
    }

    /// poll(2) for input on `fd`; false when the time ran out first.
    static func waitReadable(_ fd: Int32, milliseconds: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = poll(&p, 1, milliseconds)
        return r != 0
    }
}

/// Applies CommandLimits to one running child: when it started, when it last made progress.
struct LimitWatch {
    let limits: CommandLimits
    let stdin: Int32?
    let started = Date()
    private var lastProgress = Date()
    private var stdinOffset: Int64 = -1
    private var fed: Int64 = 0

    init(_ limits: CommandLimits, stdin: Int32?) {
        self.limits = limits
        self.stdin = stdin
    }

    var isUnlimited: Bool { limits.total == nil && limits.stall == nil && limits.abort == nil }

    mutating func progressed() { lastProgress = Date() }

    /// Why the child must be ended now, if it must.
    mutating func check() -> CommandCut? {
        if let abort = limits.abort, abort.isRaised { return .aborted }
        if let total = limits.total, Date().timeIntervalSince(started) >= Double(total) {
            return .timedOut(seconds: total)
        }
        guard let stall = limits.stall else { return nil }
        if let progress = limits.progress {
            let value = progress.value
            if value != fed {
                fed = value
                lastProgress = Date()
            }
        }
        if let stdin {
            let offset = Int64(lseek(stdin, 0, SEEK_CUR))
            if offset != stdinOffset {
                stdinOffset = offset
                lastProgress = Date()
            }
        }
        return Date().timeIntervalSince(lastProgress) >= Double(stall) ? .stalled(seconds: stall) : nil
    }

    /// Waits for the child to exit (its stdout is already closed), still under the limits.
    mutating func waitForExit(of child: SpawnedProcess) -> CommandCut? {
        if isUnlimited { return nil }
        while !child.hasFinished() {
            if let cut = check() { return cut }
            usleep(20_000)
        }
        return nil
    }
}

/// A child process started with posix_spawn: stdin from a descriptor (or /dev/null), stdout into a
/// descriptor (a pipe, or a file the child writes directly), stderr collected on a thread of its own.
/// Whoever creates one must `wait()` for it.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    private let errCollector: ErrorCollector
    private var exitStatus: Int32?

    public init(_ argv: [String], stdin: Int32?, stdout: Int32) throws(ProcessError) {
        var errPipe: [Int32] = [0, 0]
        guard bvm_pipe_cloexec(&errPipe) == 0 else { throw .pipe(reason: String(cString: strerror(errno))) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        _ = bvm_spawn_close_from(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The child starts with default signal handling even if we ignore SIGTERM/SIGINT.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        // ... and with no signal blocked: the mask is inherited, and a thread of ours (or of a test
        // runner) that blocks SIGTERM would otherwise make `terminate()` a no-op on the child.
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attr, &unblocked)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, environ)
        close(errPipe[1])
        guard rc == 0 else {
            close(errPipe[0])
            throw .spawn(program: argv[0], reason: String(cString: strerror(rc)))
        }
        self.pid = pid
        let collector = ErrorCollector(fd: errPipe[0])
        errCollector = collector
        let thread = Thread { collector.readAll() }
        thread.start()
    }

    public func terminate() { if exitStatus == nil { kill(pid, SIGTERM) } }

    /// Ends the child: SIGTERM, SIGKILL after `grace` seconds if it is still there, then reaps it.
    /// Its stderr is waited for at most `stderrGrace` seconds more: with a shared ssh connection the
    /// master holds the descriptor until the remote side lets go, and a hung remote never does.
    public func stop(grace: TimeInterval = 5, stderrGrace: TimeInterval = 5) {
        terminate()
        let deadline = Date().addingTimeInterval(grace)
        while poll() == nil && Date() < deadline { usleep(20_000) }
        if poll() == nil {
            kill(pid, SIGKILL)
            _ = waitExit()
        }
        if errCollector.done.wait(timeout: .now() + stderrGrace) == .success { errCollector.done.signal() }
    }

    /// The exit status if the child has ended (it is reaped then), nil while it runs.
    public func poll() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
        guard r == pid else { return nil }
        exitStatus = Self.decode(status)
        return exitStatus
    }

    /// True once the child has exited and its stderr reached end-of-file (every process holding
    /// the child's descriptors, e.g. an ssh connection master, has let go of them).
    public func hasFinished() -> Bool { poll() != nil && errCollector.isDone }

    /// Waits for the child and for the end of its stderr; returns its exit status (128+N for signal N).
    @discardableResult
    public func wait() -> Int32 {
        let status = waitExit()
        errCollector.done.wait()
        errCollector.done.signal()  // later waits return at once
        return status
    }

    /// Reaps the child (blocking) without waiting for its stderr.
    private func waitExit() -> Int32 {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let decoded = Self.decode(status)
        exitStatus = decoded
        return decoded
    }

    /// stderr's text (its tail when long); complete after `wait()`.
    public var stderr: String { errCollector.text }

    static func decode(_ status: Int32) -> Int32 { (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
}

private final class ErrorCollector: @unchecked Sendable {
    let fd: Int32
    let done = DispatchSemaphore(value: 0)
    private var bytes = [UInt8]()

    init(fd: Int32) { self.fd = fd }

    func readAll() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            // Keep the tail: stderr of a long stream may be large, the end says what failed.
            lock.withLock {
                bytes.append(contentsOf: buf[0..<n])
                if bytes.count > 256 * 1024 { bytes.removeFirst(bytes.count - 128 * 1024) }
            }
        }
        close(fd)
        lock.withLock { finished = true }
        done.signal()
    }

    private let lock = NSLock()
    private var finished = false
    var isDone: Bool { lock.withLock { finished } }

    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }
}
