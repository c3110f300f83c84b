import Foundation

/// After the VM is back and everything is copied: the commit makes the backup visible, then the
/// hypervisor's copy is kept or removed, then (only now) older backups are rotated away.
extension BackupRun {
    /// Writes the manifest and renames the partial directory into place.
    func commit() throws -> Manifest {
        let manifest = Manifest(
            vm: plan.vm, id: plan.id, host: plan.host, mode: plan.mode, requestedMode: plan.requestedMode,
            modeNote: plan.modeNote, priorState: plan.priorState, compression: compression,
            started: Timestamps.iso(started), finished: Timestamps.iso(Date()),
            durationSeconds: Date().timeIntervalSince(started), downtimeSeconds: downtime,
            disks: plan.disks.compactMap { images[$0.target] },
            excluded: plan.excluded.map { Manifest.ExcludedDisk(target: $0.target, source: $0.source) },
            ramState: ramImage, domainXML: plan.definition, keptOnHost: plan.keepOnHost && chunkSession == nil,
            sequence: store.nextSequence(plan.vm), consistency: consistency, quiesceSeconds: quiesceSeconds,
            store: chunkSession == nil ? nil : .chunks)
        let future = store.futureDated(plan.vm, than: plan.id)
        if !future.isEmpty {
            let message =
                "backups dated after this one exist (\(future.joined(separator: ", "))): was the clock set back?"
                + " They are kept and rotated by the order they were made in"
            log.warning("\(message)")
        }
        try? FileManager.default.removeItem(atPath: partial + "/" + BackupNames.breadcrumb)
        let committed: String
        do {
            committed = try commitChunked(manifest)
            chunkSession?.staging.release()
        } catch {
            discardEverything()
            throw error
        }
        log.info("committed", metadata: ["path": "\(committed)", "downtime_s": "\(String(format: "%.1f", downtime))"])
        return manifest
    }

    /// The hypervisor's copy: exactly the newest is kept when the schedule asks for it, else none.
    func keepOnHost() throws {
        if plan.keepOnHost && chunkSession == nil {
            try hypervisor.keepStagedCopy(plan.work, id: plan.id)
            log.info(
                "newest compressed copy kept on the hypervisor", metadata: ["path": "\(plan.work.keptCopy(plan.id))"])
        } else {
            try hypervisor.removeStagedCopies(plan.work, id: plan.id)
        }
    }

    /// Store=chunks: what the rotated backups alone used goes now. Another collection running is fine
    /// (it does the same work); a failure is a warning of a good backup.
    func collectGarbage() {
        do {
            let r = try ChunkCollector(storage: store.layout.storage).collect()
            log.info(
                "chunk store collected",
                metadata: [
                    "removed_chunks": "\(r.removed)", "removed_bytes": "\(r.removedBytes)",
                    "kept_for_writers": "\(r.keptForWriters)",
                ])
        } catch ChunkCollectorError.busy {
            log.info("chunk store: another garbage collection runs; this one is skipped")
        } catch {
            log.warning("chunk store garbage collection failed: \(error)")
        }
    }

    /// Keeps the newest KEEP good backups of exactly this VM; runs only after a successful commit.
    func rotate() throws {
        guard let keep = plan.keep else { return }
        let removed = try store.rotate(vm: plan.vm, keep: keep)
        if !removed.isEmpty { log.info("rotated", metadata: ["removed": "\(removed.joined(separator: ","))"]) }
        if storeFormat == .chunks && !removed.isEmpty { collectGarbage() }
    }
}
