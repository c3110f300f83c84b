import Foundation

/// The copying stages: snapshots while the VM is frozen, disks that are not LVs while it is stopped,
/// the snapshots after it is back, and the saved RAM state.
extension BackupRun {
    /// Every LV disk gets our snapshot while the VM is frozen.
    func takeSnapshots() throws {
        for planned in plan.snapshots {
            try hypervisor.createSnapshot(planned.snapshot, of: planned.origin, size: plan.snapshotSize)
            liveSnapshots[planned.disk.target] = planned.snapshot
            log.info(
                "snapshot created",
                metadata: [
                    "disk": "\(planned.disk.target)", "snapshot": "\(planned.snapshot.fullName)",
                    "size": "\(plan.snapshotSize)",
                ])
        }
    }

    /// Disks that are not LVs are copied now, with the VM stopped (as the seed did).
    func copyStoppedDisks() throws {
        for disk in plan.stoppedDisks { try copy(disk, from: disk.source) }
    }

    /// Each snapshot is copied while the VM runs, checked for overflow, and removed at once.
    func copySnapshots() throws {
        for planned in plan.snapshots {
            let snapshot = planned.snapshot
            do {
                try copy(planned.disk, from: snapshot.path, volume: planned.origin)
            } catch {
                // An invalidated snapshot fails reads with EIO: say why.
                if let status = try? hypervisor.snapshotStatus(snapshot), !status.valid {
                    throw overflowed(planned, status)
                }
                throw error
            }
            let status = try hypervisor.snapshotStatus(snapshot)
            guard status.valid else { throw overflowed(planned, status) }
            try hypervisor.removeSnapshot(snapshot)
            liveSnapshots.removeValue(forKey: planned.disk.target)
        }
    }

    private func overflowed(_ planned: PlannedSnapshot, _ status: SnapshotStatus) -> PipelineError {
        .snapshotOverflowed(
            snapshot: planned.snapshot.fullName, origin: planned.disk.source, detail: status.detail,
            snapshotSize: plan.snapshotSize)
    }

    /// The RAM state saved by a hot backup (or of a paused VM) is part of the backup.
    func copyRAMState() throws {
        guard let ramFile = plan.ramFile else { return }
        working(on: "ram")
        let file = BackupNames.ramImage(compression: compression)
        let r = try transfer(ramFile, file: file, stage: false)
        ramImage = Manifest.StoredImage(
            target: "ram", source: ramFile, kind: nil, format: nil, file: file, rawBytes: r.rawBytes,
            storedBytes: r.storedBytes, storedCksum: r.storedCksum, storedSHA256: r.storedSHA256)
    }

    func copy(_ disk: DomainDisk, from source: String, volume: LogicalVolume? = nil) throws {
        working(on: disk.target)
        if chunkSession != nil {
            return try storeChunked(disk, from: .path(source), volume: volume?.fullName, content: nil)
        }
        let file = BackupNames.image(target: disk.target, format: disk.format, compression: compression)
        let t0 = Date()
        let r = try transfer(source, file: file, stage: plan.keepOnHost)
        logCopied(disk, from: source, r, since: t0)
        images[disk.target] = Manifest.StoredImage(
            target: disk.target, source: disk.source, kind: disk.kind, format: disk.format, file: file,
            rawBytes: r.rawBytes, storedBytes: r.storedBytes, storedCksum: r.storedCksum,
            storedSHA256: r.storedSHA256, volume: volume?.fullName)
    }

    func logCopied(_ disk: DomainDisk, from source: String, _ r: TransferredImage, since t0: Date) {
        log.info(
            "disk copied",
            metadata: [
                "disk": "\(disk.target)", "from": "\(source)", "raw_bytes": "\(r.rawBytes)",
                "stored_bytes": "\(r.storedBytes)",
                "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(t0)))",
            ])
    }

    /// One image into the partial directory (and, with keep-on-host, into the staging directory).
    private func transfer(_ source: String, file: String, stage: Bool) throws -> TransferredImage {
        if abort.isRaised { throw PipelineError.aborted }
        return try hypervisor.copyImage(
            source, scratch: plan.stagingDirectory, stageFile: stage ? plan.work.stagedImage(plan.id, file: file) : nil,
            to: partial + "/" + file, abort: abort)
    }
}
