import Foundation

/// Publishes one running job's JobProgress in `spool/progress/JOB`. Phase changes are written at
/// once by the pipeline's thread (a small file, renamed into place, not fsynced: it is a view, not a
/// record). Bytes are never pushed by the copy: while a phase counts, a thread of the reporter's own
/// asks `bytes` (a stat of the partial backup directory, or a counter) four times a second and
/// computes the rate and the ETA; a slow disk under the spool delays that thread, never the copy.
public final class ProgressReporter: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    /// One writer of the file at a time (the pipeline's thread and the publisher's).
    private let writeLock = NSLock()
    private var state: JobProgress
    private var bytes: (@Sendable () -> Int64)?
    private var samples: [(at: Date, bytes: Int64)] = []
    private var publisher: Thread?
    private var stopped = false
    /// The rate is over this many seconds of samples: steady enough to read, recent enough to follow.
    static let window: TimeInterval = 5
    static let interval: TimeInterval = 0.25

    public init(spool: SpoolLayout, job: String, vm: String) {
        path = spool.progress + "/" + job
        let now = Date()
        state = JobProgress(
            job: job, vm: vm, host: nil, phase: .locate, detail: nil, pid: getpid(), started: now, phaseStarted: now,
            updated: now)
    }

    /// Enters a phase; ends the counting of the one before.
    public func phase(_ phase: JobProgress.Phase, host: String? = nil, detail: String? = nil) {
        lock.withLock {
            bytes = nil
            samples = []
            state.phase = phase
            state.detail = detail
            if let host { state.host = host }
            state.phaseStarted = Date()
            state.bytesDone = nil
            state.bytesTotal = nil
            state.bytesPerSecond = nil
            state.etaSeconds = nil
        }
        publish()
    }

    /// From now on, `bytes` says how far the phase is (heading to `total`, when known).
    public func counting(total: Int64?, detail: String? = nil, bytes: @escaping @Sendable () -> Int64) {
        let newThread: Thread? = lock.withLock {
            self.bytes = bytes
            samples = []
            state.bytesTotal = total
            if let detail { state.detail = detail }
            guard publisher == nil else { return nil }
            let thread = Thread { [weak self] in self?.publishLoop() }
            publisher = thread
            return thread
        }
        newThread?.start()
        sample()
    }

    /// What the phase works on now (the disk being copied); the count goes on.
    public func note(_ detail: String) {
        lock.withLock { state.detail = detail }
        publish()
    }

    /// The job is over: the file goes, the thread ends.
    public func finish() {
        lock.withLock { stopped = true }
        writeLock.withLock { _ = unlink(path) }
    }

    private func publishLoop() {
        while !lock.withLock({ stopped }) {
            Thread.sleep(forTimeInterval: Self.interval)
            sample()
        }
    }

    private func sample() {
        guard let read = lock.withLock({ bytes }) else { return }
        let value = read()
        let now = Date()
        lock.withLock {
            guard self.bytes != nil else { return }
            samples.append((now, value))
            samples.removeAll { now.timeIntervalSince($0.at) > Self.window }
            state.bytesDone = value
            if let first = samples.first, now.timeIntervalSince(first.at) >= 1 {
                let rate = Double(value - first.bytes) / now.timeIntervalSince(first.at)
                state.bytesPerSecond = max(rate, 0)
                if let total = state.bytesTotal, rate > 0 { state.etaSeconds = max(Double(total - value), 0) / rate }
            }
        }
        publish()
    }

    private func publish() {
        writeLock.withLock {
            let bytes: [UInt8] = lock.withLock {
                guard !stopped else { return [] }
                state.updated = Date()
                return state.encoded()
            }
            guard !bytes.isEmpty else { return }
            let temporary = path + ".tmp"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { return }
            let written = (try? Files.writeAll(fd, bytes, path: temporary)) != nil
            close(fd)
            if !written || rename(temporary, path) != 0 { unlink(temporary) }
        }
    }
}
