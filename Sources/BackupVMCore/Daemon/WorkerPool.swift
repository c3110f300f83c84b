import Foundation
import Logging

/// Settings of a worker pool, from backup_vm.conf (or a test).
public struct WorkerPoolSettings: Sendable {
    public var maxGlobal: Int
    public var maxPerHost: Int
    public var rescanInterval: TimeInterval
    public var tmpMaxAge: TimeInterval
    public var finishedMaxAge: TimeInterval
    /// Exit once nothing is queued or running (test workers and one-shot runs).
    public var exitWhenIdle: Bool

    public init(
        maxGlobal: Int, maxPerHost: Int, rescanInterval: TimeInterval, tmpMaxAge: TimeInterval = 36 * 3600,
        finishedMaxAge: TimeInterval = 30 * 86400, exitWhenIdle: Bool = false
    ) {
        self.maxGlobal = maxGlobal
        self.maxPerHost = maxPerHost
        self.rescanInterval = rescanInterval
        self.tmpMaxAge = tmpMaxAge
        self.finishedMaxAge = finishedMaxAge
        self.exitWhenIdle = exitWhenIdle
    }
}

/// The worker daemon's core: claims queued jobs and runs each on a thread of its own under the slot
/// locks. One loop (this type's `run`) makes every scheduling decision; it wakes on inotify events,
/// finished jobs and a rescan timer. Head-of-line: a job whose host has no free slot goes back to
/// new/ and the loop moves on to the next job, so a saturated host never blocks other hosts.
public final class WorkerPool: @unchecked Sendable {
    public let spool: Spool
    public let runner: JobRunner
    public let recovery: OrphanRecovery
    public let settings: WorkerPoolSettings
    public let channel: WakeChannel
    let logger: Logger

    // Touched only by the loop in `run`.
    private var running: [String: AbortFlag] = [:]
    private var vmOfJob: [String: String] = [:]
    private var hostOfVM: [String: String] = [:]
    private var stopClaiming = false

    public init(
        spool: Spool, runner: JobRunner, recovery: OrphanRecovery, settings: WorkerPoolSettings,
        channel: WakeChannel = WakeChannel(), logger: Logger
    ) {
        self.spool = spool
        self.runner = runner
        self.recovery = recovery
        self.settings = settings
        self.channel = channel
        self.logger = logger
    }

    /// Runs until a shutdown request (then lets running jobs finish) or, with exitWhenIdle, until the
    /// spool is empty. inotify is started here and stopped before returning.
    public func run() async {
        let watcher: InotifyWatcher?
        do {
            watcher = try InotifyWatcher.start(
                directories: [spool.layout.new, spool.layout.done, spool.layout.failed],
                channel: channel, logger: logger)
        } catch {
            logger.error(
                "inotify unavailable (\(error)); falling back to rescanning every \(Int(settings.rescanInterval)) s")
            watcher = nil
        }
        let timer = Task { [channel, settings] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(settings.rescanInterval * 1e9))
                if Task.isCancelled { break }
                channel.timerFired()
            }
        }
        defer {
            timer.cancel()
            watcher?.stop()
        }

        housekeeping()
        if dispatch() { return }
        for await _ in channel.stream {
            let pending = channel.drain()
            for (name, outcome) in pending.finished {
                running.removeValue(forKey: name)
                if case .deferred(let vm, let host) = outcome { hostOfVM[vm] = host }
            }
            if pending.shutdown && !stopClaiming {
                stopClaiming = true
                logger.notice("shutting down: claiming no new jobs, \(running.count) running")
            }
            if pending.abort {
                logger.warning("aborting \(running.count) running jobs: they roll back and fail")
                for flag in running.values { flag.raise() }
            }
            if stopClaiming {
                if running.isEmpty { break }
                continue
            }
            if pending.timerDue || pending.overflow { housekeeping() }
            if dispatch() { break }
        }
        logger.notice("worker pool stopped")
    }

    /// Recovery of abandoned jobs and sweeping of old files; on start and on every timer tick.
    private func housekeeping() {
        for outcome in recovery.run() {
            logger.notice("recovery: \(outcome)")
        }
        let swept = spool.sweepTmp(olderThan: settings.tmpMaxAge)
        if !swept.isEmpty { logger.notice("removed \(swept.count) stale files from tmp/") }
        spool.sweepFinished(olderThan: settings.finishedMaxAge)
    }

    /// One pass over new/: claim what fits. Returns true when the pool should exit (idle and asked to).
    private func dispatch() -> Bool {
        let pending: [PendingJob]
        do { pending = try spool.pendingJobs() } catch {
            logger.error("cannot list the spool: \(error)")
            return false
        }
        var saturated = Set<String>()
        let pendingNames = Set(pending.map(\.name))
        vmOfJob = vmOfJob.filter { pendingNames.contains($0.key) }
        for job in pending {
            if running.count >= settings.maxGlobal { break }
            if vmOfJob[job.name] == nil, let vm = spool.peek(job.name)?.request.vm { vmOfJob[job.name] = vm }
            // Skip jobs whose host (as last located) is full; they stay queued in order.
            if let vm = vmOfJob[job.name], let host = hostOfVM[vm] {
                if saturated.contains(host) { continue }
                if !runner.locks.hostHasFreeSlot(host, limit: settings.maxPerHost) {
                    saturated.insert(host)
                    continue
                }
            }
            let global: FileLock
            do {
                guard let g = try runner.locks.tryAcquireGlobal(limit: settings.maxGlobal) else { break }
                global = g
            } catch {
                logger.error("cannot take a global slot: \(error)")
                break
            }
            let claimed: ClaimedJob
            do {
                guard let c = try spool.claim(job.name) else {
                    global.release()
                    continue
                }
                claimed = c
            } catch {
                global.release()
                logger.error("cannot claim \(job.name): \(error)")
                continue
            }
            start(claimed, global: global)
        }
        if settings.exitWhenIdle && running.isEmpty && pending.isEmpty && spool.names(in: .active).isEmpty {
            return true
        }
        return false
    }

    private func start(_ job: ClaimedJob, global: FileLock) {
        let abort = AbortFlag()
        running[job.name] = abort
        let runner = self.runner
        let channel = self.channel
        let thread = Thread {
            let outcome = runner.run(job, slots: .pool(globalSlot: global), abort: abort)
            channel.jobFinished(job.name, outcome)
        }
        thread.name = "job \(job.name)"
        thread.start()
    }
}
