import CInotifyTools
import Foundation
import Logging

/// What one inotify event means to the worker pool; the watcher's thread hands every event here.
///
/// An event only wakes the pool, which lists new/ afresh on every pass, so a lost event of a job is
/// harmless as long as some later wake-up comes. IN_Q_OVERFLOW says the kernel dropped events because
/// its queue (fs.inotify.max_queued_events) was full: any job's arrival may be among them, so it asks
/// for a full pass at once (new/ and, through housekeeping, active/) instead of leaving anything to
/// the rescan timer. The first overflow is a warning with the remedy; later ones are only counted and
/// logged at debug level, so that a storm of them does not flood syslog.
public final class InotifyEvents: @unchecked Sendable {
    private let channel: WakeChannel
    private let logger: Logger
    private let lock = NSLock()
    private var overflows = 0

    public init(channel: WakeChannel, logger: Logger) {
        self.channel = channel
        self.logger = logger
    }

    /// The warning an operator reads when the queue overflows for the first time.
    public static let overflowWarning =
        "inotify queue overflowed (events were dropped); rescanning the spool now, nothing is lost "
        + "(raise fs.inotify.max_queued_events if this repeats)"

    /// How many overflows were seen so far.
    public var overflowCount: Int { lock.withLock { overflows } }

    public func handle(mask: UInt32) {
        guard mask & UInt32(IN_Q_OVERFLOW) != 0 else {
            channel.wake()
            return
        }
        let n = lock.withLock {
            overflows += 1
            return overflows
        }
        if n == 1 {
            logger.warning("\(Self.overflowWarning)")
        } else {
            logger.debug("inotify queue overflowed again (\(n) times so far); rescanning the spool")
        }
        channel.queueOverflowed()
    }
}
