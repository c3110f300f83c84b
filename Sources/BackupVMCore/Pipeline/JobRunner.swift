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
        var globalSlot: FileLock?
        if case .pool(let g) = slots { globalSlot = g }
        defer { globalSlot?.release() }

        let request: JobRequest
        switch job.parsed {
        case .failure(let error):
            return fail(job, "unreadable job: \(error.description)", started: nil, host: nil)
        case .success(let file):
            if let status = file.resultStatus {
                return fail(
                    job, "job already carries a result (status=\(status.rawValue)); expected a fresh job", started: nil,
                    host: nil)
            }
            request = file.request
        }
        let vm = request.vm
        guard isKnownVM(vm) else {
            return fail(
                job, "unknown VM '\(vm)': it has no line in sheduler.conf; add one to back it up", started: nil,
                host: nil)
        }
        let vmLock: FileLock
        do {
            guard let lock = try locks.tryAcquireVM(vm) else {
                let holder = FileLock.holderText(locks.vmLockPath(vm)) ?? "another process"
                return fail(job, "a backup of '\(vm)' is already running (\(holder))", started: nil, host: nil)
            }
            vmLock = lock
        } catch {
            return fail(job, "cannot take the VM lock: \(error)", started: nil, host: nil)
        }
        defer { vmLock.release() }
        vmLock.describeHolder("pid=\(getpid()) job=\(job.name)")

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
                do {
                    try job.unclaim()
                    return .deferred(vm: vm, host: host)
                } catch {
                    return fail(job, "cannot put the job back in the queue: \(error)", started: nil, host: host)
                }
            }
        case .wait:
            var announced = false
            while true {
                hostSlot = tryOrNil { try locks.tryAcquireHost(host, limit: maxPerHost) }
                if hostSlot != nil { globalSlot = tryOrNil { try locks.tryAcquireGlobal(limit: maxGlobal) } }
                if hostSlot != nil && globalSlot != nil { break }
                hostSlot?.release()
                hostSlot = nil
                if abort.isRaised {
                    return fail(job, "aborted while waiting for a free slot", started: nil, host: host)
                }
                if !announced {
                    logger.notice("waiting for a free backup slot", metadata: ["vm": "\(vm)", "host": "\(host)"])
                    announced = true
                }
                Thread.sleep(forTimeInterval: pollInterval)
            }
        }
        let holder = "pid=\(getpid()) job=\(job.name) vm=\(vm)"
        globalSlot?.describeHolder(holder)
        hostSlot?.describeHolder(holder)

        let started = Date()
        logger.info("backup started", metadata: ["vm": "\(vm)", "host": "\(host)", "job": "\(job.name)"])
        do {
            let report = try executor.backup(vm: vm, host: host, jobName: job.name, abort: abort)
            let result = JobResult(
                status: .done, started: started, host: report.host,
                bytes: report.bytes, backupID: report.backupID)
            do { try job.finish(result) } catch {
                logger.error(
                    "backup succeeded but its job record could not be moved to done/: \(error)",
                    metadata: ["vm": "\(vm)", "job": "\(job.name)"])
            }
            logger.info(
                "backup finished",
                metadata: [
                    "vm": "\(vm)", "host": "\(report.host)",
                    "bytes": "\(report.bytes)", "backup": "\(report.backupID ?? "-")",
                ])
            return .succeeded(report)
        } catch {
            return fail(job, "\(error)", started: started, host: host)
        }
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
