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
/// Housekeeping (recovery of abandoned jobs, which runs the pipeline's cleanup over ssh and may take
/// minutes, and sweeping) runs on a thread of its own, one pass at a time, so the loop keeps claiming
/// meanwhile; recovery and the pool's jobs never work on the same VM at once (VMActivity).
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
    private var housekeepingRunning = false

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

    /// Runs until a shutdown request (then lets running jobs and a running recovery finish) or, with
    /// exitWhenIdle, until the spool is empty. inotify is started here and stopped before returning.
    public func run() async {
        let watcher = startWatcher()
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

        startHousekeeping()
        if dispatch() { return }
        for await _ in channel.stream {
            let pending = channel.drain()
            if !handle(pending) { break }
        }
        logger.notice("worker pool stopped")
    }

    private func startWatcher() -> InotifyWatcher? {
        do {
            let watcher = try InotifyWatcher.start(
                directories: [spool.layout.new, spool.layout.done, spool.layout.failed],
                channel: channel, logger: logger)
            logger.info("inotify watches new/, done/ and failed/ of the spool")
            return watcher
        } catch {
            logger.error(
                "inotify unavailable (\(error)); falling back to rescanning every \(Int(settings.rescanInterval)) s")
            return nil
        }
    }

    /// One wake-up of the loop. Returns false when the pool is to stop.
    private func handle(_ pending: WakeChannel.Pending) -> Bool {
        for (name, outcome) in pending.finished {
            running.removeValue(forKey: name)
            if case .deferred(let vm, let host) = outcome { hostOfVM[vm] = host }
        }
        if pending.housekeepingDone { housekeepingRunning = false }
        if pending.shutdown && !stopClaiming {
            stopClaiming = true
            let recovering = housekeepingRunning ? " (and waiting for the recovery pass under way)" : ""
            logger.notice("shutting down: claiming no new jobs, \(running.count) running\(recovering)")
        }
        if pending.abort {
            logger.warning("aborting \(running.count) running jobs: they roll back and fail")
            for flag in running.values { flag.raise() }
        }
        if stopClaiming { return !(running.isEmpty && !housekeepingRunning) }
        // Every pass lists new/ afresh; the timer and an inotify overflow also look at active/.
        if pending.timerDue || pending.overflow { startHousekeeping() }
        return !dispatch()
    }

    /// Recovery of abandoned jobs and sweeping of old files, on start and on every timer tick, on a
    /// thread of its own; at most one pass at a time (a tick during a pass is skipped). Its end is
    /// reported through the channel, which also makes the loop look at new/ again (recovery requeues).
    private func startHousekeeping() {
        guard !housekeepingRunning else { return }
        housekeepingRunning = true
        // Adopted here, before the next dispatch: no job of a VM with an abandoned job starts before
        // that job's cleanup (a dead worker may have left the VM shut off or snapshotted).
        let adopted = recovery.adopt()
        let (recovery, spool, settings, logger, channel) = (recovery, spool, settings, logger, channel)
        let thread = Thread {
            for job in adopted {
                for outcome in recovery.recover([job]) { logger.notice("recovery: \(outcome)") }
                channel.wake()  // the VM's queued jobs may start now
            }
            if !recovery.recoverStranded().isEmpty { channel.wake() }
            let swept = spool.sweepTmp(olderThan: settings.tmpMaxAge)
            if !swept.isEmpty { logger.notice("removed \(swept.count) stale files from tmp/") }
            spool.sweepFinished(olderThan: settings.finishedMaxAge)
            channel.housekeepingFinished()
        }
        thread.name = "housekeeping"
        thread.start()
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
            let vm = vmOfJob[job.name]
            // Skip jobs whose host (as last located) is full; they stay queued in order.
            if let vm, let host = hostOfVM[vm] {
                if saturated.contains(host) { continue }
                if !runner.locks.hostHasFreeSlot(host, limit: settings.maxPerHost) {
                    saturated.insert(host)
                    continue
                }
            }
            // A VM being recovered keeps its jobs queued until the recovery pass ends.
            if let vm, !recovery.activity.beginJob(vm) { continue }
            if claimAndStart(job.name, vm: vm) == .noGlobalSlot { break }
        }
        let idle = running.isEmpty && !housekeepingRunning && pending.isEmpty && spool.names(in: .active).isEmpty
        return settings.exitWhenIdle && idle
    }

    private enum ClaimResult { case started, lost, noGlobalSlot }

    /// Takes a global slot, claims the job and starts it; gives back what it took when it cannot.
    /// `vm`, when known, was registered with beginJob and is ended here or when the job ends.
    private func claimAndStart(_ name: String, vm: String?) -> ClaimResult {
        let endJob = { if let vm { self.recovery.activity.endJob(vm) } }
        let global: FileLock
        do {
            guard let g = try runner.locks.tryAcquireGlobal(limit: settings.maxGlobal) else {
                endJob()
                return .noGlobalSlot
            }
            global = g
        } catch {
            endJob()
            logger.error("cannot take a global slot: \(error)")
            return .noGlobalSlot
        }
        do {
            guard let claimed = try spool.claim(name) else {
                global.release()
                endJob()
                return .lost
            }
            start(claimed, global: global, vm: vm)
            return .started
        } catch {
            global.release()
            endJob()
            logger.error("cannot claim \(name): \(error)")
            return .lost
        }
    }

    private func start(_ job: ClaimedJob, global: FileLock, vm: String?) {
        let abort = AbortFlag()
        running[job.name] = abort
        let (runner, channel, activity) = (runner, channel, recovery.activity)
        let thread = Thread {
            let outcome = runner.run(job, slots: .pool(globalSlot: global), abort: abort)
            if let vm { activity.endJob(vm) }
            channel.jobFinished(job.name, outcome)
        }
        thread.name = "job \(job.name)"
        thread.start()
    }
}
