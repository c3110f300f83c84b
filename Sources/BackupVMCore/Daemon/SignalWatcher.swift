import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM/SIGINT for the daemon: the first asks the pool to stop claiming and let running jobs
/// finish; the second asks running jobs to roll back and fail now.
public final class SignalWatcher: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private var count = 0
    private let lock = NSLock()

    public init(channel: WakeChannel, signals: [Int32] = [SIGTERM, SIGINT]) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                let n = self.lock.withLock {
                    self.count += 1
                    return self.count
                }
                if n == 1 { channel.requestShutdown() } else { channel.requestAbort() }
            }
            source.resume()
            sources.append(source)
        }
    }

    deinit { for s in sources { s.cancel() } }
}
