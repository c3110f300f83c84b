import Foundation

/// What inspection decided for one backup, before anything is touched: which disks are copied from
/// snapshots after the VM is back and which while it is stopped, the mode actually used and why,
/// where the RAM state goes, what is excluded, and the state to return the VM to.
public struct BackupPlan: Sendable {
    public var vm: String
    public var host: String
    public var id: String
    /// The state before the backup: the state every path returns the VM to.
    public var priorState: DomainState
    public var requestedMode: SnapshotMode
    /// The mode used: hot only when the VM runs and every disk backed up is an LV; live only when the
    /// VM runs and its host can (else LiveFallback's mode).
    public var mode: SnapshotMode
    /// Why the mode differs from the requested one.
    public var modeNote: String?
    /// The persistent definition (`virsh dumpxml --inactive`), stored with the backup.
    public var definition: String
    /// Every disk backed up, in the domain's order.
    public var disks: [DomainDisk]
    /// LV disks: snapshotted while the VM is frozen, copied from the snapshot after it is back.
    public var snapshots: [PlannedSnapshot]
    /// The LV of each LV disk, by target (recorded in the manifest).
    public var volumes: [String: LogicalVolume]
    /// Disks that are not LVs: copied while the VM is stopped.
    public var stoppedDisks: [DomainDisk]
    public var excluded: [DomainDisk]
    public var work: WorkLayout
    /// Where the RAM state is saved on the hypervisor (hot backups and paused VMs), else nil.
    public var ramFile: String?
    public var keepOnHost: Bool
    /// Good backups to keep (sheduler.conf); nil: no rotation.
    public var keep: Int?
    public var snapshotSize: String
    public var shutdownTimeout: Int
    public var forceOff: Bool
    /// Mode=live: how long the guest's file systems may stay frozen for the job's begin.
    public var freezeTimeout: Int = 10

    public var stagingDirectory: String { work.stagingDirectory(id) }
    /// The live backup job's directory (socket, scratch files); nil unless the mode is live.
    public var liveDirectory: String? { mode == .live ? work.liveDirectory(id) : nil }
}

/// An LV disk and our snapshot of it.
public struct PlannedSnapshot: Sendable, Equatable {
    public var disk: DomainDisk
    public var origin: LogicalVolume
    public var snapshot: LogicalVolume
}

/// Makes the plan from the configuration and one inspection of the domain on its hypervisor.
struct BackupPlanner {
    let configuration: Configuration

    func plan(vm: String, id: String, on hypervisor: any Hypervisor) throws -> BackupPlan {
        guard let inspection = try hypervisor.inspect(vm) else {
            throw PipelineError.vanished(vm: vm, host: hypervisor.name)
        }
        let profile = configuration.profile(for: vm)
        let all = try DomainXML.disks(of: inspection.liveXML, vm: vm)
        try DomainXML.checkSafe(inspection.inactiveXML, what: "persistent domain XML of \(vm)")
        // Every block disk is resolved, excluded or not: ExcludeLVs may name it by another of its paths.
        let exclusion = DiskExclusion(profile.excludeLVs)
        let blockPaths = all.filter { $0.kind == .block }.map(\.source)
        let devices = try hypervisor.blockDevices(blockPaths + (blockPaths.isEmpty ? [] : exclusion.devicePaths))
        let excluded = all.filter { exclusion.excludes($0, devices: devices) }
        let disks = all.filter { !excluded.contains($0) }
        guard !disks.isEmpty else { throw PipelineError.everyDiskExcluded(vm: vm) }
        try refuseOverlays(disks, vm: vm, on: hypervisor)
        let snapshots = disks.compactMap { disk in
            devices[disk.source]?.volume.map { origin in
                PlannedSnapshot(
                    disk: disk, origin: origin,
                    snapshot: LogicalVolume(
                        vg: origin.vg, lv: BackupNames.snapshotLV(of: origin.lv, id: id), sizeBytes: origin.sizeBytes))
            }
        }
        var stopped = disks.filter { devices[$0.source]?.volume == nil }
        var (mode, note) = Self.mode(requested: profile.mode, prior: inspection.state, stoppedDisks: stopped)
        if mode == .live {
            (mode, note) = try liveOrFallback(
                vm: vm, profile: profile, prior: inspection.state, stopped, on: hypervisor)
        }
        // A live job reads every disk, LVs included, from its exports: no snapshot, nothing stopped.
        let snapshotted = mode == .live ? [] : snapshots
        if mode == .live { stopped = [] }
        let work = WorkLayout(workPath: profile.workPath, vm: vm)
        let entry = configuration.schedule.entry(for: vm)
        return BackupPlan(
            vm: vm, host: hypervisor.name, id: id, priorState: inspection.state, requestedMode: profile.mode,
            mode: mode, modeNote: note, definition: inspection.inactiveXML, disks: disks, snapshots: snapshotted,
            volumes: Dictionary(uniqueKeysWithValues: snapshots.map { ($0.disk.target, $0.origin) }),
            stoppedDisks: stopped, excluded: excluded, work: work,
            ramFile: mode == .hot || inspection.state == .paused ? work.ramFile(id) : nil,
            keepOnHost: entry?.keepOnHost ?? false, keep: entry?.keep, snapshotSize: profile.snapshotSize,
            shutdownTimeout: profile.shutdownTimeout ?? configuration.main.shutdownTimeout,
            forceOff: profile.forceOff ?? configuration.main.forceOff, freezeTimeout: profile.freezeTimeout)
    }

    /// A qcow2 image with a backing file would be stored without it. The live XML shows backing chains
    /// of running VMs only, so the images' headers are asked too.
    func refuseOverlays(_ disks: [DomainDisk], vm: String, on hypervisor: any Hypervisor) throws {
        let qcow2 = disks.filter { $0.format == .qcow2 }
        let backing = try hypervisor.qcow2BackingFiles(qcow2.map(\.source))
        if let disk = qcow2.first(where: { backing[$0.source] != nil }) {
            throw DomainXML.backingChain(
                vm: vm, target: disk.target, path: disk.source, backing: "backing file \(backing[disk.source] ?? "?")")
        }
    }

    /// Live needs a running VM (a paused or shut-off one is backed up cold: nothing is written to its
    /// disks meanwhile); its host's support is asked by `liveOrFallback`. Hot needs a running VM and
    /// every disk on LVM; otherwise cold, with the reason.
    static func mode(requested: SnapshotMode, prior: DomainState, stoppedDisks: [DomainDisk]) -> (
        SnapshotMode, String?
    ) {
        if requested == .live {
            guard prior == .running else {
                return (.cold, "the VM is \(prior.rawValue): no live job needed, cold backup")
            }
            return (.live, nil)
        }
        guard requested == .hot else { return (.cold, nil) }
        if !stoppedDisks.isEmpty {
            let names = stoppedDisks.map(\.target)
            let verb = names.count == 1 ? "is not an LV" : "are not LVs"
            return (
                .cold,
                "hot needs every disk on LVM; \(names.joined(separator: ", ")) \(verb): cold backup"
                    + " (Mode=live backs them up without stopping the VM)"
            )
        }
        guard prior == .running else { return (.cold, "the VM is \(prior.rawValue): nothing to save hot, cold backup") }
        return (.hot, nil)
    }

    /// Live when the host can; else LiveFallback's mode (said in the note), or the backup fails
    /// naming what the host lacks.
    func liveOrFallback(
        vm: String, profile: SnapshotProfile, prior: DomainState, _ stopped: [DomainDisk], on hypervisor: any Hypervisor
    ) throws -> (SnapshotMode, String?) {
        let support = try hypervisor.liveSupport()
        if support.isAvailable { return (.live, nil) }
        guard let fallback = profile.liveFallback else {
            throw LiveBackupError.unsupported(vm: vm, host: hypervisor.name, missing: support.missing)
        }
        let (mode, note) = Self.mode(requested: fallback, prior: prior, stoppedDisks: stopped)
        let why =
            "live is not possible on \(hypervisor.name) (missing \(support.missing.joined(separator: "; "))):"
            + " \(fallback.rawValue) backup (LiveFallback=\(fallback.rawValue))"
        return (mode, note.map { why + "; " + $0 } ?? why)
    }
}
