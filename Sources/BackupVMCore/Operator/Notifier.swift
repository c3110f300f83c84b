import CShims
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the operator's NotifyCommand after a job, with the job's result in its environment
/// (`BACKUP_VM_*`, see `JobNotice.environment`). Whatever the command does — fails, hangs, prints a lot,
/// forks children that hang — the job is not affected: it has already been recorded; the command runs
/// in a process group of its own, which is killed (SIGTERM, then SIGKILL 2 s later) when it runs
/// longer than NotifyTimeout; the start of its output (4 KiB) is logged, the rest read and dropped.
public struct Notifier: Sendable {
    public let settings: NotifySettings
    public let logger: Logger

    public init(settings: NotifySettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// How a run of the command ended.
    public enum Ending: Equatable, Sendable {
        case exited(Int32)
        case killedAfterTimeout
        case couldNotStart(String)
    }

    @discardableResult
    public func notify(_ notice: JobNotice) -> Ending? {
        guard settings.wants(notice.job.status) else { return nil }
        let (ending, output) = run(environment: notice.environment)
        let meta: Logger.Metadata = ["vm": "\(notice.job.vm)", "job": "\(notice.job.job)"]
        let said = output.isEmpty ? "" : "; it said: \(output)"
        switch ending {
        case .exited(0): logger.info("notifier ran", metadata: meta)
        case .exited(let status): logger.warning("notifier exited with status \(status)\(said)", metadata: meta)
        case .killedAfterTimeout:
            logger.warning(
                "notifier killed after NotifyTimeout (\(settings.timeoutSeconds) s)\(said)", metadata: meta)
        case .couldNotStart(let why): logger.warning("notifier could not be started: \(why)", metadata: meta)
        }
        return ending
    }

    /// Runs the command; returns how it ended and the start of what it wrote.
    func run(environment: [String: String]) -> (Ending, String) {
        guard let output = OutputTail(limit: 4096) else { return (.couldNotStart("no pipe for its output"), "") }
        let pid: pid_t
        switch spawn(environment: environment, output: output.writeFD) {
        case .success(let p): pid = p
        case .failure(let why):
            close(output.writeFD)
            close(output.readFD)
            return (.couldNotStart(why.description), "")
        }
        output.start()
        let ending = waitOrKill(pid)
        return (ending, output.text())
    }

    private func spawn(environment: [String: String], output: Int32) -> Result<pid_t, SystemError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        _ = bvm_spawn_close_from(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A group of its own: the timeout kills whatever it started too (sendmail, a stuck curl).
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attr, &unblocked)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BACKUP_VM_") }
        env.merge(environment) { _, new in new }
        let words = ["/bin/sh", "-c", settings.command]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp)
        guard rc == 0 else { return .failure(SystemError("posix_spawn", path: "/bin/sh", errno: rc)) }
        return .success(pid)
    }

    private func waitOrKill(_ pid: pid_t) -> Ending {
        let deadline = Date().addingTimeInterval(TimeInterval(settings.timeoutSeconds))
        while Date() < deadline {
            if let status = reap(pid, block: false) { return .exited(status) }
            usleep(20_000)
        }
        kill(-pid, SIGTERM)
        let grace = Date().addingTimeInterval(2)
        while Date() < grace {
            if reap(pid, block: false) != nil {
                kill(-pid, SIGKILL)  // its children, if they ignored the SIGTERM
                return .killedAfterTimeout
            }
            usleep(20_000)
        }
        kill(-pid, SIGKILL)
        _ = reap(pid, block: true)
        return .killedAfterTimeout
    }

    private func reap(_ pid: pid_t, block: Bool) -> Int32? {
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, block ? 0 : WNOHANG) } while r < 0 && errno == EINTR
        guard r == pid else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// The command's stdout and stderr through a pipe, of which only the first `limit` bytes are
    /// kept (a notifier that prints gigabytes fills nothing). Read on a thread of its own until the
    /// end of the stream, waited for at most 2 s after the command ended: a process of its that
    /// lives on (a background delivery) and keeps the pipe does not hold us.
    private final class OutputTail: @unchecked Sendable {
        let readFD: Int32
        let writeFD: Int32
        let limit: Int
        private var kept: [UInt8] = []
        private let lock = NSLock()
        private let ended = DispatchSemaphore(value: 0)

        init?(limit: Int) {
            var fds: [Int32] = [0, 0]
            guard bvm_pipe_cloexec(&fds) == 0 else { return nil }
            (readFD, writeFD, self.limit) = (fds[0], fds[1], limit)
        }

        func start() {
            close(writeFD)  // the child has its copy
            Thread { [self] in
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    lock.withLock {
                        if kept.count < limit { kept += buffer[0..<min(n, limit - kept.count)] }
                    }
                }
                // This thread owns the read end: closed only once nobody reads it any more.
                close(readFD)
                ended.signal()
            }.start()
        }

        /// What was kept, once the stream ended or 2 s passed (a background child of the command
        /// may hold the pipe; the thread reads on until it lets go).
        func text() -> String {
            _ = ended.wait(timeout: .now() + 2)
            let bytes = lock.withLock { kept }
            return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).joined(separator: " | ")
        }
    }
}
