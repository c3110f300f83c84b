import Foundation
import Logging

/// Everything `backup_vm status` shows, gathered by reading files only (the spool, its progress
/// files and slot locks, the storage's manifests): queued and running jobs, and per scheduled VM its
/// last result, newest good backup, staleness and whether it is due now. `status --json` prints it;
/// README "status --json" documents the fields.
public struct StatusReport: Codable, Sendable {
    public struct QueuedJob: Codable, Sendable, Equatable {
        public var job: String
        public var vm: String?
        public var queued: Date
        public var requestedBy: String?
    }

    public struct RunningJob: Codable, Sendable, Equatable {
        public var job: String
        public var vm: String?
        /// nil: the job has not published its progress yet, or its worker died (recovery will run).
        public var progress: JobProgress?
    }

    public struct VMStatus: Codable, Sendable, Equatable {
        public var history: VMHistory
        public var due: Bool
        public var dueReason: String
        /// When its next backup window opens (nil while due, or without days).
        public var nextWindow: Date? = nil
    }

    public struct HeldSlot: Codable, Sendable, Equatable {
        public var slot: String
        public var holder: String
    }

    public var generated: Date
    public var staleAfterHours: Int
    public var queued: [QueuedJob]
    public var running: [RunningJob]
    public var vms: [VMStatus]
    public var heldSlots: [HeldSlot]
    /// What the last `backup_vm doctor` found about VMs nobody backs up (nil: doctor never ran).
    public var coverage: Coverage?

    public static func gather(configuration: Configuration, now: Date = Date()) -> StatusReport {
        let spool = Spool(root: configuration.main.spoolDir)
        let queued = ((try? spool.pendingJobs(now: now)) ?? []).map { pending in
            let file = spool.peek(pending.name)
            return QueuedJob(
                job: pending.name, vm: file?.request.vm, queued: pending.queuedAt,
                requestedBy: file?.request.requestedBy)
        }
        let running = spool.names(in: .active).map { name in
            var vm: String?
            if case .success(let file)? = spool.read(name, in: .active) { vm = file.request.vm }
            return RunningJob(job: name, vm: vm, progress: JobProgress.read(spool.layout.progress + "/" + name))
        }
        let histories = FleetHistory(configuration: configuration).histories(
            of: configuration.schedule.entries.map(\.vm), now: now)
        let enqueuer = Enqueuer(configuration: configuration, spool: spool, logger: Logger(label: "status"))
        let decisions = Dictionary(enqueuer.decisions(now: now).map { ($0.vm, $0) }) { a, _ in a }
        let entries = Dictionary(configuration.schedule.entries.map { ($0.vm, $0) }) { a, _ in a }
        let vms = histories.map { h in
            let due = decisions[h.vm]?.due ?? false
            let next =
                due
                ? nil
                : entries[h.vm].flatMap {
                    enqueuer.planner.nextWindow(
                        after: now, hours: configuration.main.backupHours, weekdays: $0.weekdays)
                }
            return VMStatus(history: h, due: due, dueReason: decisions[h.vm]?.reason ?? "", nextWindow: next)
        }
        return StatusReport(
            generated: now, staleAfterHours: configuration.main.staleAfterHours, queued: queued, running: running,
            vms: vms, heldSlots: spool.locks.heldSlots().map { HeldSlot(slot: $0.slot, holder: $0.holder) },
            coverage: Coverage.read(spool: spool.layout))
    }

    public func json() -> String {
        let encoder = OperatorJSON.encoder(pretty: true)
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}
