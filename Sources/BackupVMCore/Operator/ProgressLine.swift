import Foundation

/// A manual run's progress on its terminal: `web01 kvm1 copy vda 1.2 GiB of ~3.4 GiB 85.0 MiB/s
/// ETA 26s, 1m02s`. It follows the job's progress file (what `status` reads) from a thread of its own.
public final class ProgressLine: @unchecked Sendable {
    let path: String
    let console: ConsoleStatusLine
    private let lock = NSLock()
    private var stopped = false
    private var running = false
    private let ended = DispatchSemaphore(value: 0)

    public init(spool: SpoolLayout, job: String, console: ConsoleStatusLine = .shared) {
        path = spool.progress + "/" + job
        self.console = console
    }

    public func start() {
        guard console.isTerminal else { return }
        running = true
        Thread { [self] in
            while !lock.withLock({ stopped }) {
                if let p = JobProgress.read(path) { console.show(Self.render(p)) }
                Thread.sleep(forTimeInterval: 0.25)
            }
            ended.signal()
        }.start()
    }

    /// Ends the thread (it shows nothing after this returns) and removes the line.
    public func stop() {
        lock.withLock { stopped = true }
        if running { ended.wait() }
        console.clear()
    }

    public static func render(_ p: JobProgress, now: Date = Date()) -> String {
        var parts = [p.vm, p.host ?? "", p.phase.rawValue, p.detail ?? ""].filter { !$0.isEmpty }
        if let done = p.bytesDone {
            parts.append(HumanUnits.size(done) + (p.bytesTotal.map { " of ~" + HumanUnits.size($0) } ?? ""))
        }
        if let rate = p.bytesPerSecond { parts.append(HumanUnits.rate(rate)) }
        if let eta = p.etaSeconds { parts.append("ETA " + HumanUnits.duration(eta)) }
        return parts.joined(separator: " ") + ", " + HumanUnits.duration(now.timeIntervalSince(p.started))
    }
}
