import CInotifyTools
import Foundation
import Logging

/// Watches spool folders with libinotifytools and wakes the worker pool. The library keeps
/// process-global state and `inotifytools_next_event` blocks, so one dedicated thread owns it for
/// its whole life. inotify only wakes: the pool always re-reads the directory listing, and it also
/// rescans on a timer, so a missed event delays a job, never loses it. What an event means (a wake-up,
/// or after IN_Q_OVERFLOW a full pass at once) is InotifyEvents' business.
public final class InotifyWatcher: @unchecked Sendable {
    private let stopLock = NSLock()
    private var stopRequested = false
    private let stopped = DispatchSemaphore(value: 0)

    private init() {}

    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Starts the watching thread. Throws when inotify cannot be set up (then the pool still works on
    /// its timer, and the caller says so in the log).
    public static func start(directories: [String], channel: WakeChannel, logger: Logger) throws -> InotifyWatcher {
        let watcher = InotifyWatcher()
        let ready = DispatchSemaphore(value: 0)
        let box = ErrorBox()
        let events = InotifyEvents(channel: channel, logger: logger)
        let thread = Thread {
            guard inotifytools_initialize() != 0 else {
                box.message = "inotifytools_initialize failed: \(String(cString: strerror(inotifytools_error())))"
                ready.signal()
                watcher.stopped.signal()
                return
            }
            let mask = Int32(IN_MOVED_TO | IN_CLOSE_WRITE)
            for dir in directories where inotifytools_watch_file(dir, mask) == 0 {
                box.message = "cannot watch \(dir): \(String(cString: strerror(inotifytools_error())))"
                inotifytools_cleanup()
                ready.signal()
                watcher.stopped.signal()
                return
            }
            ready.signal()
            while !watcher.isStopRequested {
                // Timeout in seconds: the loop checks for a stop request at least once a second.
                guard let event = inotifytools_next_event(1) else { continue }
                events.handle(mask: event.pointee.mask)
            }
            inotifytools_cleanup()
            watcher.stopped.signal()
        }
        thread.name = "inotify"
        thread.start()
        ready.wait()
        if let message = box.message { throw StartError(description: message) }
        return watcher
    }

    private var isStopRequested: Bool { stopLock.withLock { stopRequested } }

    /// Stops the thread and waits for it to release the library's state.
    public func stop() {
        stopLock.withLock { stopRequested = true }
        stopped.wait()
    }
}

private final class ErrorBox: @unchecked Sendable {
    var message: String?
}
