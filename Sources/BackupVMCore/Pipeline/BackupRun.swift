import Foundation
import Logging

/// One backup in progress: its plan, its hypervisor, and what has been done so far (what the
/// VM-state guarantee and the cleanup must know). The stages are its methods, run in order by
/// `execute`; each is small and lives with its kind (BackupRun+Freeze, +Copy, +Commit).
///
/// Whatever fails, the VM ends in the state it had before (running, paused, shut off), our snapshots,
/// the partial backup directory and the staged copies are removed and older backups are untouched:
/// only a committed backup (renamed into place with its manifest) is ever visible.
final class BackupRun {
    let plan: BackupPlan
    let hypervisor: any Hypervisor
    let store: BackupStore
    let compression: Compression
    /// Store=chunks: disks go into the chunk store through the hypervisor helper at this path (nil:
    /// beside the executable); the session exists from `prepare` on.
    let storeFormat: StoreFormat
    let chunkHelperPath: String?
    var chunkSession: ChunkSession?
    let abort: AbortFlag
    let log: Logger
    let started: Date
    /// How often the VM's state is polled while waiting for it to shut down.
    let pollInterval: TimeInterval

    /// The partial backup directory on this server (`.ID.partial`), once created.
    var partial = ""
    /// Our snapshots that exist now, by disk target: every path removes them.
    var liveSnapshots: [String: LogicalVolume] = [:]
    var images: [String: Manifest.StoredImage] = [:]
    var ramImage: Manifest.StoredImage?
    /// When the VM stopped running because of us (nil: it did not).
    var frozenAt: Date?
    var downtime: TimeInterval = 0
    var thawed = false
    /// Live mode: a backup job may run on the domain now (set before it is begun: a begin that timed
    /// out may have started one); every path ends it.
    var liveJobMayRun = false
    /// Live mode: the guest's file systems may be frozen now (every path thaws them).
    var filesystemsFrozen = false
    /// Live mode: watches the job's scratch space and the guest while the disks are copied.
    var scratchWatch: ScratchWatch?
    /// How often the watch reads (2 s in production).
    var scratchPollInterval: TimeInterval { pollInterval * 4 }
    /// Live mode: the job could not be ended; the breadcrumb stays for its recovery.
    var liveJobStranded = false
    /// Live mode: how consistent the disks are, and how long the file systems were frozen.
    var consistency: Consistency?
    var quiesceSeconds: Double?
    /// What a recovery would need if this worker died now; rewritten as steps complete.
    var breadcrumb: JobBreadcrumb?
    /// Told each phase and how to count the copy (`backup_vm status`); nil: nobody watches.
    var progress: ProgressReporter?

    init(
        plan: BackupPlan, hypervisor: any Hypervisor, store: BackupStore, compression: Compression, abort: AbortFlag,
        log: Logger, started: Date, pollInterval: TimeInterval, storeFormat: StoreFormat = .files,
        chunkHelperPath: String? = nil
    ) {
        self.storeFormat = storeFormat
        self.chunkHelperPath = chunkHelperPath
        self.plan = plan
        self.hypervisor = hypervisor
        self.store = store
        self.compression = compression
        self.abort = abort
        self.log = log
        self.started = started
        self.pollInterval = pollInterval
    }

    /// The stages, in order.
    func execute() throws -> BackupReport {
        try prepare()
        if plan.mode == .live {
            // The VM is never stopped: there is no prior state to return it to. A VM found off after
            // the job was shut down by someone else, and starting it would be wrong.
            thawed = true
            try keepingPriorState {
                enter(.freeze)
                let job = try startLiveJob()
                countCopy()
                try copyExports(of: job)
                // The job is ended by the cleanup, on this path as on every other.
            }
        } else {
            try keepingPriorState {
                enter(.freeze)
                try freeze()
                enter(.snapshot)
                try takeSnapshots()
                countCopy()
                try copyStoppedDisks()
                enter(.thaw)
                try thaw()
                countCopy()
                try copySnapshots()
                try copyRAMState()
            }
        }
        enter(.commit)
        let manifest = try commit()
        // The backup is good from here on: what fails now is told, and never costs it or the rotation.
        var warnings: [String] = []
        afterCommit("keeping the copy on the hypervisor", &warnings) { try keepOnHost() }
        enter(.rotate)
        afterCommit("rotation", &warnings) { try rotate() }
        return BackupReport(host: plan.host, backupID: plan.id, bytes: manifest.storedBytes, warnings: warnings)
    }

    /// A step after the commit: its failure is logged and reported as a warning of a done job.
    func afterCommit(_ what: String, _ warnings: inout [String], _ step: () throws -> Void) {
        do { try step() } catch {
            log.error("\(what) failed after the backup was committed: \(error)")
            warnings.append("\(what) failed: \(error)")
        }
    }

    /// The VM-state guarantee, in one place: whatever `body` does or throws, our snapshots are
    /// removed (cleanup) and the VM is returned to its prior state; if anything failed, everything of
    /// this backup is discarded and the first failure is thrown. A failed thaw is the loudest error:
    /// the staged RAM state stays on the hypervisor, since it is what brings the VM back.
    func keepingPriorState(_ body: () throws -> Void) throws {
        var failure: Error?
        do {
            try body()
        } catch {
            failure = error
            // Said at once: cleaning up and putting the VM back may take long (a host that hung).
            log.warning("\(error); cleaning up and returning the VM to its prior state (\(plan.priorState.rawValue))")
        }
        cleanUp(&failure)
        do {
            try thaw()
        } catch {
            markForAttention(error)
            store.discard(partial: partial)
            throw PipelineError.notReturnedToPriorState(
                vm: plan.vm, host: plan.host, prior: plan.priorState, cause: "\(error)", ramFile: plan.ramFile,
                backupFailure: failure.map { "\($0)" })
        }
        if let failure {
            discardEverything()
            throw failure
        }
    }

    /// Creates the partial directory with the breadcrumb (written before the VM is touched, so a
    /// dead worker's job can be recovered), the staging directory on the hypervisor, and removes
    /// leftover snapshots of these LVs from a killed job before new ones are made.
    func prepare() throws {
        partial = try store.beginBackup(vm: plan.vm, id: plan.id)
        let crumb = JobBreadcrumb(
            id: plan.id, host: plan.host, priorState: plan.priorState.rawValue, remoteStageDir: plan.stagingDirectory,
            remoteRAMFile: plan.ramFile, snapshots: plan.snapshots.map(\.snapshot), restoreFromRAM: plan.ramFile != nil,
            liveDirectory: plan.liveDirectory)
        try crumb.write(into: partial)
        breadcrumb = crumb
        do {
            try startChunkSession()
            // WorkPath is checked for every job (root's alone). A live backup's begin makes its own
            // directory and each stream its staging directory.
            try hypervisor.makeDirectory(
                plan.mode == .live ? nil : plan.stagingDirectory, inWorkPath: plan.work.workPath)
            for leftover in try hypervisor.leftoverSnapshots(of: plan.snapshots.map(\.origin)) {
                log.warning(
                    "removing a leftover snapshot of an earlier job", metadata: ["snapshot": "\(leftover.fullName)"])
                try hypervisor.removeSnapshot(leftover)
            }
        } catch {
            discardEverything()
            throw error
        }
    }

    /// Removes our snapshots that still exist (they cost the VM write performance while they do).
    /// A failure to remove one becomes the backup's failure unless it had failed already.
    func cleanUp(_ failure: inout Error?) {
        cleanUpLiveJob(&failure)
        for (target, snapshot) in liveSnapshots.sorted(by: { $0.key < $1.key }) {
            do {
                try hypervisor.removeSnapshot(snapshot)
                liveSnapshots.removeValue(forKey: target)
            } catch {
                log.error("could not remove snapshot \(snapshot.fullName): \(error)")
                if failure == nil { failure = error }
            }
        }
    }

    /// Records a completed step in the breadcrumb (see JobBreadcrumb.completed).
    func record(_ step: JobBreadcrumb.Step) throws {
        try breadcrumb?.record(step, in: partial)
    }

    /// The VM stays marked until an operator clears it: no backup or recovery touches it or its
    /// staged RAM state meanwhile.
    func markForAttention(_ error: Error) {
        let mark = AttentionMark(
            vm: plan.vm, host: plan.host, backupID: plan.id, priorState: plan.priorState, ramFile: plan.ramFile,
            stagingDirectory: plan.stagingDirectory, reason: ReasonText.oneLine("\(error)", limit: 2000),
            marked: Timestamps.iso(Date()))
        do { try mark.write(storage: store.layout) } catch {
            log.critical("could not mark \(plan.vm) for attention: \(error)")
        }
    }

    /// Nothing of a failed backup may remain: not the partial directory here, not the staged copy.
    /// Only the breadcrumb of a live job that could not be ended stays (in its partial directory,
    /// emptied): it is what lets recovery end that job.
    func discardEverything() {
        chunkSession?.staging.discard()
        if liveJobStranded {
            store.discard(partial: partial, keeping: BackupNames.breadcrumb)
        } else {
            store.discard(partial: partial)
        }
        try? hypervisor.removeDirectory(plan.stagingDirectory)
    }
}
