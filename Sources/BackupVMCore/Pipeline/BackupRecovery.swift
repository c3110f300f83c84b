import Foundation
import Logging

/// After a worker died mid-backup: every partial backup of the VM whose breadcrumb names a host has
/// its VM returned to the state recorded before it was touched, our snapshots and the staged copy
/// removed on that host; then the partial directories here are removed.
struct BackupRecovery {
    let configuration: Configuration
    let fleet: any Fleet
    let store: BackupStore
    let logger: Logger

    /// Returns what it did, for the job's record.
    func recover(vm: String) throws -> String {
        var notes: [String] = []
        for partial in store.partialDirectories(of: vm) {
            let crumb: JobBreadcrumb?
            do { crumb = try JobBreadcrumb.read(from: partial) } catch {
                throw RecoveryError.unreadableBreadcrumb(vm: vm, partial: partial, why: "\(error)")
            }
            if let crumb, let prior = DomainState(rawValue: crumb.priorState) {
                notes.append(try undo(crumb, vm: vm, prior: prior))
            }
            store.discard(partial: partial)
            notes.append("partial backup \((partial as NSString).lastPathComponent) removed")
            // Store=chunks: the dead job's new chunks, staged and never committed.
            if let id = BackupNames.partialID((partial as NSString).lastPathComponent),
                ChunkStore(storage: store.layout.storage).removeAbandonedStaging(
                    job: ChunkStore.stagingName(vm: vm, id: id))
            {
                notes.append("its staged chunks removed")
            }
        }
        let swept = store.sweepTemporaries(vm: vm)
        if !swept.isEmpty { notes.append("removed \(swept.joined(separator: ", "))") }
        return notes.isEmpty ? "nothing left behind" : notes.joined(separator: "; ")
    }

    /// Undoes what the dead worker's backup did on its hypervisor.
    private func undo(_ crumb: JobBreadcrumb, vm: String, prior: DomainState) throws -> String {
        // The breadcrumb is a file in the storage folder: it names a host we are configured for, or
        // nothing is done on its word.
        guard configuration.main.hostServers.contains(crumb.host) else {
            throw RecoveryError.unknownHost(vm: vm, host: crumb.host)
        }
        // Only our own names are removed or restored: the staging directory and RAM file this VM's
        // profile gives for that backup ID.
        let work = WorkLayout(workPath: configuration.profile(for: vm).workPath, vm: vm)
        guard Timestamps.parseCompact(Substring(crumb.id)) != nil,
            crumb.remoteStageDir == work.stagingDirectory(crumb.id),
            crumb.remoteRAMFile == nil || crumb.remoteRAMFile == work.ramFile(crumb.id),
            crumb.liveDirectory == nil || crumb.liveDirectory == work.liveDirectory(crumb.id)
        else {
            throw RecoveryError.unexpectedPaths(vm: vm, stagingDirectory: crumb.remoteStageDir)
        }
        let hypervisor = try fleet.connect(crumb.host)
        defer { hypervisor.close() }
        if let live = crumb.liveDirectory {
            return try undoLive(crumb, vm: vm, directory: live, on: hypervisor)
        }
        // Once the backup had returned the VM, its state now is not ours to change.
        if !crumb.hasThawed {
            let ramFile = crumb.restoreFromRAM ? crumb.remoteRAMFile : nil
            try PriorState.restore(vm, to: prior, ramFile: ramFile, on: hypervisor, log: logger)
        }
        for snapshot in crumb.snapshots where BackupNames.isOurSnapshot(snapshot.lv) {
            try hypervisor.removeSnapshot(snapshot)
        }
        try hypervisor.removeDirectory(crumb.remoteStageDir)
        let snapshots = crumb.snapshots.isEmpty ? "" : "snapshots removed, "
        let state = crumb.hasThawed ? "already back in" : "returned to"
        return "\(vm) \(state) \(prior.rawValue) on \(crumb.host), \(snapshots)staged copy removed"
    }

    /// A live backup never stopped the VM: its file systems are thawed (harmless when nothing is
    /// frozen), the backup job whose socket is in its directory is ended and the directory removed.
    private func undoLive(_ crumb: JobBreadcrumb, vm: String, directory: String, on hypervisor: any Hypervisor) throws
        -> String
    {
        var thawNote = ""
        do { try hypervisor.thawFilesystems(vm) } catch {
            logger.warning("recovery of \(vm): thawing its file systems failed: \(error)")
            thawNote = " (thawing its file systems failed: \(error))"
        }
        try hypervisor.endBackupJob(vm, directory: directory)
        try hypervisor.removeDirectory(crumb.remoteStageDir)
        // A job left running may have filled its scratch file system, and qemu paused the guest on it.
        var resumed = ""
        if let now = try hypervisor.condition(vm), now.pausedByIOError {
            let outcome = ScratchWatch.resume(vm, now, on: hypervisor, log: logger)
            logger.critical("recovery of \(vm): \(outcome)")
            resumed = "; \(outcome)"
        }
        return "\(vm) on \(crumb.host): live backup job ended, its scratch files and socket removed\(thawNote),"
            + " staged copy removed\(resumed)"
    }
}

/// Recovery refuses to act on a breadcrumb it cannot trust.
enum RecoveryError: Error, CustomStringConvertible, Equatable {
    case unknownHost(vm: String, host: String)
    case unexpectedPaths(vm: String, stagingDirectory: String)
    case unreadableBreadcrumb(vm: String, partial: String, why: String)

    var description: String {
        switch self {
        case .unknownHost(let vm, let host):
            return "the recovery record of \(vm) names host '\(host)', which is not in HostServers; check \(vm) by hand"
        case .unreadableBreadcrumb(let vm, let partial, let why):
            return "the recovery record of \(vm) in \(partial) cannot be read (\(why)); it says in which state the VM"
                + " was left and which snapshots exist: check \(vm) on its hypervisor by hand, then remove \(partial)"
        case .unexpectedPaths(let vm, let dir):
            return "the recovery record of \(vm) names staging directory '\(dir)', which is not where its"
                + " WorkPath puts it (changed since?); check \(vm) and its working path by hand"
        }
    }
}
