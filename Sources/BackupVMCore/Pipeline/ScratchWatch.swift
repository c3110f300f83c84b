import Foundation
import Logging

/// Watches a running live job from a thread of its own while its disks are copied: every
/// `interval` it reads the room left on the scratch files' file system and the domain's condition
/// (one round trip). It ends the job (so that copy-before-write stops and its scratch files go)
/// when the room beyond what the live jobs there may still need falls under ScratchRoom.floor, or
/// at once when qemu has paused the guest on a failed write; a guest paused so is resumed right
/// after the end (qemu retries the failed write then, and it goes to the disk alone: the guest
/// never sees an error). What it did is the backup's failure (`trip`); the copy in flight fails
/// because its export is gone.
final class ScratchWatch: @unchecked Sendable {
    let hypervisor: any Hypervisor
    let vm: String
    let directory: String
    let interval: TimeInterval
    let log: Logger

    private let condition = NSCondition()
    private var stopping = false
    private var finished = false
    private var _trip: LiveBackupError?
    /// Used by the watch's thread only.
    private var failedReads = 0
    private var tripped = false
    private var ended = false

    init(hypervisor: any Hypervisor, vm: String, directory: String, interval: TimeInterval, log: Logger) {
        self.hypervisor = hypervisor
        self.vm = vm
        self.directory = directory
        self.interval = interval
        self.log = log
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "scratch-watch-\(vm)"
        thread.start()
    }

    /// Stops the watch and waits for a reading or an end in flight to finish; returns what the watch
    /// had to do (nil: nothing).
    @discardableResult
    func stop() -> LiveBackupError? {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while !finished { condition.wait() }
            return _trip
        }
    }

    private func run() {
        defer {
            condition.withLock {
                finished = true
                condition.broadcast()
            }
        }
        while true {
            let goOn = condition.withLock { () -> Bool in
                if !stopping { _ = condition.wait(until: Date().addingTimeInterval(interval)) }
                return !stopping
            }
            guard goOn, poll() else { return }
        }
    }

    /// One reading and what follows from it, or, once tripped, the next try at what it must do;
    /// false when that is done (the job ended, a guest paused on a failed write running again).
    func poll() -> Bool {
        if !tripped {
            guard let reading = read() else { return true }
            switch reading.verdict {
            case .fine:
                return true
            case .low:
                log.error(
                    "the scratch file system of the live backup job runs low: ending the job",
                    metadata: ["available": "\(reading.available)", "outstanding": "\(reading.outstanding)"])
                record(
                    .scratchLow(
                        vm: vm, host: hypervisor.name, directory: directory, available: reading.available,
                        outstanding: reading.outstanding))
            case .paused(let paused):
                log.critical(
                    "qemu paused \(vm) on a failed write during its live backup (\(paused.description)): ending the job"
                )
                record(
                    .pausedByIOError(
                        vm: vm, host: hypervisor.name, condition: paused.description, resumed: false,
                        detail: "not resumed yet"))
            }
            tripped = true
        }
        return !act()
    }

    /// The reading, or nil (told now and then) when the host cannot be asked: the copy itself fails
    /// when it is gone.
    private func read() -> ScratchReading? {
        do {
            let reading = try hypervisor.liveScratch(vm, directory: directory)
            failedReads = 0
            return reading
        } catch {
            failedReads += 1
            if failedReads == 1 || failedReads % 10 == 0 {
                log.warning("cannot read the live backup job's scratch space (\(failedReads) times): \(error)")
            }
            return nil
        }
    }

    /// Ends the job, then resumes the guest if qemu paused it; true when both are done. Either may
    /// wait on libvirt (a paused qemu drains its exports' requests first, which a stalled reader
    /// holds up): what fails is tried again at the next poll.
    private func act() -> Bool {
        if !ended {
            do {
                try hypervisor.endBackupJob(vm, directory: directory)
                ended = true
            } catch {
                log.error("the watch could not end the live backup job (tried again): \(error)")
                return false
            }
        }
        guard let now = try? hypervisor.condition(vm) else { return false }
        guard now.pausedByIOError else { return true }
        let outcome = Self.resume(vm, now, on: hypervisor, log: log)
        record(outcome)
        if case .pausedByIOError(_, _, _, true, _) = outcome { return true }
        return false
    }

    private func record(_ error: LiveBackupError) { condition.withLock { _trip = error } }

    /// Resumes a guest that qemu paused (once its job has ended); the error says whether it runs again.
    static func resume(_ vm: String, _ paused: DomainCondition, on hypervisor: any Hypervisor, log: Logger)
        -> LiveBackupError
    {
        var detail = ""
        do {
            try hypervisor.resume(vm)
            let now = try hypervisor.condition(vm)
            if now?.state == .running {
                log.notice("\(vm) resumed after the live backup job was ended")
            } else {
                detail = "still \(now?.description ?? "not defined") after `virsh resume`"
            }
        } catch {
            detail = "\(error)"
        }
        return .pausedByIOError(
            vm: vm, host: hypervisor.name, condition: paused.description, resumed: detail.isEmpty, detail: detail)
    }
}
