import Foundation
import Logging

/// How a job taken from the spool ended.
public enum JobOutcome: Sendable, Equatable {
    case succeeded(BackupReport)
    case failed(String)
    /// Its host had no free slot: the job went back to new/ untouched, to be retried.
    case deferred(vm: String, host: String)
}

/// Runs one claimed job under the slot locks: the one code path shared by the worker daemon, the
/// manual `backup_vm NAME` and the spool test workers. It owns the job's result record: whatever
/// happens, the job ends in done/ or failed/ (or, deferred, back in new/), and every lock is released.
public struct JobRunner: Sendable {
    public enum SlotPolicy: Sendable {
        /// The worker pool already holds a global slot; a busy host defers the job.
        case pool(globalSlot: FileLock)
        /// A manual run waits for its slots, without holding one while it waits for the other.
        case wait
    }

    public let locks: SlotLocks
    public let maxGlobal: Int
    public let maxPerHost: Int
    public let executor: any BackupExecutor
    /// Is this VM configured (sheduler.conf)? Jobs for other VMs fail: a job never widens what the
    /// configuration allows.
    public let isKnownVM: @Sendable (String) -> Bool
    public let logger: Logger
    public let pollInterval: TimeInterval
    /// Called with the job's name once it is recorded in done/ or failed/ and every lock and slot is
    /// released (so a slow notifier holds none); not for a deferred job. Services sets it to write
    /// the metrics file and run the notifier.
    public var afterJob: (@Sendable (_ job: String) -> Void)? = nil

    public init(
        locks: SlotLocks, maxGlobal: Int, maxPerHost: Int, executor: any BackupExecutor,
        isKnownVM: @escaping @Sendable (String) -> Bool, logger: Logger, pollInterval: TimeInterval = 1
    ) {
        self.locks = locks
        self.maxGlobal = maxGlobal
        self.maxPerHost = maxPerHost
        self.executor = executor
        self.isKnownVM = isKnownVM
        self.logger = logger
        self.pollInterval = pollInterval
    }

    public func run(_ job: ClaimedJob, slots: SlotPolicy, abort: AbortFlag = AbortFlag()) -> JobOutcome {
        let progress = ProgressReporter(spool: job.layout, job: job.name, vm: job.vm ?? "?")
        let outcome = runHoldingLocks(job, slots: slots, abort: abort, progress: progress)
        progress.finish()
        if case .deferred = outcome { return outcome }
        afterJob?(job.name)
        return outcome
    }

    private func runHoldingLocks(_ job: ClaimedJob, slots: SlotPolicy, abort: AbortFlag, progress: ProgressReporter)
        -> JobOutcome
    {
        var globalSlot: FileLock?
        if case .pool(let g) = slots { globalSlot = g }
        defer { globalSlot?.release() }

        let vm: String
        let vmLock: FileLock
        do throws(JobRefusal) {
            vm = try admittedVM(job)
            vmLock = try lockVM(vm)
        } catch {
            return fail(job, error.description, started: nil, host: nil)
        }
        defer { vmLock.release() }
        vmLock.describeHolder("pid=\(getpid()) job=\(job.name)")
        return runLocked(
            job, vm: vm, vmLock: vmLock, slots: slots, globalSlot: &globalSlot, abort: abort, progress: progress)
    }

    /// The VM a job is for, when the job may run at all.
    private func admittedVM(_ job: ClaimedJob) throws(JobRefusal) -> String {
        let file: JobFile
        switch job.parsed {
        case .failure(let error): throw .unreadable(error.description)
        case .success(let f): file = f
        }
        if let status = file.resultStatus { throw .alreadyFinished(status) }
        guard isKnownVM(file.request.vm) else { throw .unknownVM(file.request.vm) }
        return file.request.vm
    }

    private func lockVM(_ vm: String) throws(JobRefusal) -> FileLock {
        let lock: FileLock?
        do { lock = try locks.tryAcquireVM(vm) } catch { throw .vmLockFailed("\(error)") }
        guard let lock else {
            throw .vmBusy(vm: vm, holder: FileLock.holderText(locks.vmLockPath(vm)) ?? "another process")
        }
        return lock
    }

    /// The rest of a job, under its VM's lock: locate, take the host's (and, waiting, a global) slot,
    /// back up.
    private func runLocked(
        _ job: ClaimedJob, vm: String, vmLock: FileLock, slots: SlotPolicy, globalSlot: inout FileLock?,
        abort: AbortFlag, progress: ProgressReporter
    ) -> JobOutcome {
        // A verify job reads this server's files only: no hypervisor, no host slot (the pool holds a
        // global one, which bounds the disk reads like any job's).
        if case .success(let file) = job.parsed, file.request.kind == .verify {
            return verifyOnServer(job, vm: vm, abort: abort, progress: progress)
        }
        progress.phase(.locate)
        let host: String
        do {
            host = try executor.locate(vm: vm)
        } catch {
            return fail(job, "\(error)", started: nil, host: nil)
        }
        var hostSlot: FileLock?
        defer { hostSlot?.release() }
        switch slots {
        case .pool:
            hostSlot = tryOrNil { try locks.tryAcquireHost(host, limit: maxPerHost) }
            if hostSlot == nil {
                // Let go of the VM's lock (and the global slot) before the job is back in new/: the
                // worker that claims it next must not find its VM still locked by us.
                vmLock.release()
                globalSlot?.release()
                return putBack(job, vm: vm, host: host)
            }
        case .wait:
            progress.phase(.wait, host: host)
            guard let taken = waitForSlots(vm: vm, host: host, abort: abort) else {
                return fail(job, JobRefusal.abortedWhileWaiting.description, started: nil, host: host)
            }
            (hostSlot, globalSlot) = (taken.host, taken.global)
        }
        let holder = "pid=\(getpid()) job=\(job.name) vm=\(vm)"
        globalSlot?.describeHolder(holder)
        hostSlot?.describeHolder(holder)
        return backup(job, vm: vm, host: host, abort: abort, progress: progress)
    }

    /// The pool's job whose host has no free slot goes back to new/.
    private func putBack(_ job: ClaimedJob, vm: String, host: String) -> JobOutcome {
        do {
            try job.unclaim()
            return .deferred(vm: vm, host: host)
        } catch {
            return fail(job, "cannot put the job back in the queue: \(error)", started: nil, host: host)
        }
    }

    /// A manual run waits for a slot of its host and a global one, never holding one while it waits
    /// for the other. nil when aborted meanwhile.
    private func waitForSlots(vm: String, host: String, abort: AbortFlag) -> (host: FileLock, global: FileLock)? {
        var announced = false
        while true {
            if let hostSlot = tryOrNil({ try locks.tryAcquireHost(host, limit: maxPerHost) }) {
                if let global = tryOrNil({ try locks.tryAcquireGlobal(limit: maxGlobal) }) {
                    return (hostSlot, global)
                }
                hostSlot.release()
            }
            if abort.isRaised { return nil }
            if !announced {
                logger.notice("waiting for a free backup slot", metadata: ["vm": "\(vm)", "host": "\(host)"])
                announced = true
            }
            Thread.sleep(forTimeInterval: pollInterval)
        }
    }

    /// Runs the pipeline and records the result.
    private func backup(_ job: ClaimedJob, vm: String, host: String, abort: AbortFlag, progress: ProgressReporter)
        -> JobOutcome
    {
        let started = Date()
        logger.info("backup started", metadata: ["vm": "\(vm)", "host": "\(host)", "job": "\(job.name)"])
        let report: BackupReport
        do {
            progress.phase(.prepare, host: host)
            if case .success(let file) = job.parsed, file.request.kind == .restoreTest {
                report = try executor.restoreTest(vm: vm, host: host, jobName: job.name, abort: abort)
            } else {
                report = try executor.backup(vm: vm, host: host, jobName: job.name, abort: abort, progress: progress)
            }
        } catch {
            return fail(job, "\(error)", started: started, host: host)
        }
        let result = JobResult(
            status: .done, started: started, host: report.host, bytes: report.bytes, backupID: report.backupID,
            warning: report.warnings.isEmpty ? nil : report.warnings.joined(separator: "; "))
        do { try job.finish(result) } catch {
            logger.error(
                "backup succeeded but its job record could not be moved to done/: \(error)",
                metadata: ["vm": "\(vm)", "job": "\(job.name)"])
        }
        logger.info(
            "backup finished",
            metadata: [
                "vm": "\(vm)", "host": "\(report.host)", "bytes": "\(report.bytes)",
                "backup": "\(report.backupID ?? "-")",
            ])
        return .succeeded(report)
    }

    /// A verify job (VerifyEveryDays): the VM's backups checked on this server, the result recorded.
    private func verifyOnServer(_ job: ClaimedJob, vm: String, abort: AbortFlag, progress: ProgressReporter)
        -> JobOutcome
    {
        let started = Date()
        logger.info("verify started", metadata: ["vm": "\(vm)", "job": "\(job.name)"])
        progress.phase(.verify)
        let report: BackupReport
        do { report = try executor.verify(vm: vm, jobName: job.name, abort: abort) } catch {
            return fail(job, "\(error)", started: started, host: nil)
        }
        do {
            try job.finish(JobResult(status: .done, started: started, backupID: report.backupID))
        } catch {
            logger.error("verify succeeded but its job record could not be moved to done/: \(error)")
        }
        logger.info("verify finished", metadata: ["vm": "\(vm)", "backup": "\(report.backupID ?? "-")"])
        return .succeeded(report)
    }

    private func fail(_ job: ClaimedJob, _ reason: String, started: Date?, host: String?) -> JobOutcome {
        logger.error("backup failed: \(reason)", metadata: ["job": "\(job.name)", "vm": "\(job.vm ?? "?")"])
        do {
            try job.finish(JobResult(status: .failed, reason: reason, started: started, host: host))
        } catch {
            logger.critical("cannot move job to failed/: \(error)", metadata: ["job": "\(job.name)"])
        }
        return .failed(reason)
    }

    private func tryOrNil(_ body: () throws -> FileLock?) -> FileLock? {
        do { return try body() } catch {
            logger.error("lock error: \(error)")
            return nil
        }
    }
}

/// Why a claimed job was not run; the description is the failed job's reason.
enum JobRefusal: Error, CustomStringConvertible {
    case unreadable(String)
    case alreadyFinished(JobResult.Status)
    case unknownVM(String)
    case vmBusy(vm: String, holder: String)
    case vmLockFailed(String)
    case abortedWhileWaiting

    var description: String {
        switch self {
        case .unreadable(let why): return "unreadable job: \(why)"
        case .alreadyFinished(let status):
            return "job already carries a result (status=\(status.rawValue)); expected a fresh job"
        case .unknownVM(let vm): return "unknown VM '\(vm)': it has no line in sheduler.conf; add one to back it up"
        case .vmBusy(let vm, let holder): return "a backup of '\(vm)' is already running (\(holder))"
        case .vmLockFailed(let error): return "cannot take the VM lock: \(error)"
        case .abortedWhileWaiting: return "aborted while waiting for a free slot"
        }
    }
}
