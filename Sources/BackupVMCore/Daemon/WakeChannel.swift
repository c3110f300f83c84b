import Foundation

/// Wakes the worker pool's dispatch loop. Wake-ups carry no data and coalesce (a burst of inotify
/// events becomes one pass over the spool); what must not be lost (finished jobs, a due timer, a
/// shutdown request) is kept in locked state that the loop drains after each wake-up.
public final class WakeChannel: @unchecked Sendable {
    public struct Pending: Sendable {
        public var finished: [(name: String, outcome: JobOutcome)] = []
        public var timerDue = false
        /// inotify dropped events (IN_Q_OVERFLOW): any job's arrival may have been among them, so the
        /// pool makes a full pass at once, housekeeping included, instead of waiting for the timer.
        public var overflow = false
        public var shutdown = false
        public var abort = false
        /// A housekeeping pass (recovery, sweeping) that ran on its own thread is over.
        public var housekeepingDone = false
    }

    public let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    private let lock = NSLock()
    private var pending = Pending()

    public init() {
        (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func wake() { continuation.yield() }

    public func jobFinished(_ name: String, _ outcome: JobOutcome) {
        lock.withLock { pending.finished.append((name, outcome)) }
        wake()
    }

    public func timerFired() {
        lock.withLock { pending.timerDue = true }
        wake()
    }
    public func queueOverflowed() {
        lock.withLock { pending.overflow = true }
        wake()
    }
    public func housekeepingFinished() {
        lock.withLock { pending.housekeepingDone = true }
        wake()
    }
    public func requestShutdown() {
        lock.withLock { pending.shutdown = true }
        wake()
    }
    public func requestAbort() {
        lock.withLock {
            pending.shutdown = true
            pending.abort = true
        }
        wake()
    }

    func drain() -> Pending {
        lock.withLock {
            let p = pending
            pending = Pending()
            return p
        }
    }
}
