import Foundation
import Logging

/// The backup of one VM: locate → inspect → freeze → snapshot → thaw → transfer → commit → rotate.
///
/// Whatever fails, the VM is returned to the state it had before (running, paused, shut off), our
/// snapshots, the partial backup directory and staged copies are removed and older backups are
/// untouched: only a committed backup (renamed into place with its manifest) is ever visible.
///
/// Freezing: cold shuts a running VM down (ACPI); hot (every disk an LV) sends the sysrq emergency
/// sync and saves the RAM state (`virsh save`); a paused VM has its RAM saved either way and is
/// restored paused. While frozen, every LV disk gets a snapshot; disks that are not LVs are copied
/// then, with the VM stopped (as the seed did). Then the VM goes back (start, or `virsh restore`) and
/// the snapshots are copied while it runs, so the downtime does not grow with the disk size. A
/// snapshot that overflowed during the copy fails the backup. `Mode=hot` on a VM with any non-LV disk
/// falls back to cold and says so in the log and the manifest.
public struct BackupPipeline: BackupExecutor {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    var main: MainConfig { configuration.main }
    var store: BackupStore { BackupStore(storage: main.backupStorage) }
    func remote(_ host: String) -> RemoteHost { RemoteHost(host, main: main) }

    public func locate(vm: String) throws -> String {
        let locator = VMLocator(hosts: main.hostServers.map(remote), logger: logger)
        return try locator.locate(vm).host
    }

    /// A backup ID not used yet by this VM (IDs are start times to the second).
    func newID(vm: String, started: Date) -> String {
        var t = started
        while true {
            let id = Timestamps.compact(t)
            let dir = store.vmDirectory(vm)
            if !Files.exists(dir + "/" + id) && !Files.exists(dir + "/.\(id).partial") { return id }
            t = t.addingTimeInterval(1)
        }
    }

    public func backup(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        let started = Date()
        let id = newID(vm: vm, started: started)
        let log = logger.with(["vm": "\(vm)", "host": "\(host)", "backup": "\(id)"])
        let share = try SSHConnectionShare()
        defer { share.close() }
        let server = RemoteHost(host, main: main, share: share)
        let virsh = Virsh(host: server)
        let lvm = LVM(host: server)
        let profile = configuration.profile(for: vm)
        let keepOnHost = configuration.schedule.entry(for: vm)?.keepOnHost ?? false

        // Inspect.
        guard let (prior, liveXML, definition) = try virsh.inspect(vm) else {
            throw PipelineError.vanished(vm: vm, host: host)
        }
        let allDisks = try DomainXML.disks(of: liveXML, vm: vm)
        let disks = allDisks.filter { !$0.isExcluded(by: profile.excludeLVs) }
        let excluded = allDisks.filter { $0.isExcluded(by: profile.excludeLVs) }
        guard !disks.isEmpty else {
            throw PipelineError.failed("every disk of \(vm) is excluded (ExcludeLVs); nothing to back up")
        }
        let volumes = try lvm.resolve(disks.filter { $0.kind == .block }.map(\.source))
        // LV disks are copied from snapshots after the VM is back; the others while it is stopped.
        let snapshotDisks = disks.filter { volumes[$0.source] != nil }
        let stoppedDisks = disks.filter { volumes[$0.source] == nil }
        let hot = profile.mode == .hot && stoppedDisks.isEmpty && prior == .running
        var modeNote: String?
        if profile.mode == .hot && !hot {
            if !stoppedDisks.isEmpty {
                let names = stoppedDisks.map(\.target)
                modeNote =
                    "hot needs every disk on LVM; \(names.joined(separator: ", ")) \(names.count == 1 ? "is not an LV" : "are not LVs"): cold backup"
            } else {
                modeNote = "the VM is \(prior.rawValue): nothing to save hot, cold backup"
            }
            log.notice("\(modeNote!)")
        }
        log.info(
            "inspected",
            metadata: [
                "state": "\(prior.rawValue)", "mode": "\(hot ? "hot" : "cold")",
                "disks": "\(disks.map { "\($0.target)=\($0.source)" }.joined(separator: ","))",
                "snapshots": "\(snapshotDisks.map(\.target).joined(separator: ","))",
                "excluded": "\(excluded.map(\.target).joined(separator: ","))",
            ])

        let workDir = profile.workPath + "/" + vm
        let stageDir = workDir + "/.\(id).partial"
        let ramFile = (hot || prior == .paused) ? stageDir + "/ram.save" : nil
        let plannedSnapshots = snapshotDisks.map {
            LogicalVolume(
                vg: volumes[$0.source]!.vg, lv: LVM.snapshotName(of: volumes[$0.source]!.lv, id: id),
                sizeBytes: volumes[$0.source]!.sizeBytes)
        }
        let partial = try store.beginBackup(vm: vm, id: id)
        try JobBreadcrumb(
            id: id, host: host, priorState: prior.rawValue, remoteStageDir: stageDir, remoteRAMFile: ramFile,
            snapshots: plannedSnapshots, restoreFromRAM: ramFile != nil
        ).write(into: partial)

        // Nothing of a failed backup may remain: not the partial directory here, not the staged copy.
        func discardEverything() {
            store.discard(partial: partial)
            _ = try? server.run("rm -rf \(ShellQuote.quote(stageDir))", what: "removing \(stageDir)")
        }

        var downtimeStart: Date?
        var downtime: TimeInterval = 0
        var thawed = false
        var snapshots: [String: LogicalVolume] = [:]  // disk target -> our snapshot
        var images: [String: Manifest.StoredImage] = [:]
        var ramImage: Manifest.StoredImage?
        var failure: Error?
        let stream = DiskStream(host: server, compression: main.compression, level: main.compressionLevel)
        func copy(_ disk: DomainDisk, from source: String) throws {
            if abort.isRaised { throw PipelineError.aborted }
            let file = "\(disk.target).\(disk.format.rawValue).\(main.compression.fileExtension)"
            let t0 = Date()
            let r = try stream.copy(
                source: source, workDir: workDir, stageFile: keepOnHost ? stageDir + "/" + file : nil,
                to: partial + "/" + file, abort: abort)
            log.info(
                "disk copied",
                metadata: [
                    "disk": "\(disk.target)", "from": "\(source)", "raw_bytes": "\(r.rawBytes)",
                    "stored_bytes": "\(r.storedBytes)",
                    "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(t0)))",
                ])
            images[disk.target] = Manifest.StoredImage(
                target: disk.target, source: disk.source, kind: disk.kind, format: disk.format,
                file: file, rawBytes: r.rawBytes, storedBytes: r.storedBytes,
                storedCksum: r.storedCksum, storedSHA256: r.storedSHA256)
        }
        func thaw() throws {
            guard !thawed else { return }
            try returnToPriorState(vm, prior: prior, virsh: virsh, ramFile: ramFile, log: log)
            thawed = true
            if let downtimeStart { downtime = Date().timeIntervalSince(downtimeStart) }
        }
        do {
            try server.run("mkdir -p \(ShellQuote.quote(stageDir))", what: "creating \(stageDir)")
            // Leftover snapshots of these LVs from a killed job go before we make new ones.
            for leftover in try lvm.leftoverSnapshots(of: snapshotDisks.map { volumes[$0.source]! }) {
                log.warning(
                    "removing a leftover snapshot of an earlier job", metadata: ["snapshot": "\(leftover.fullName)"])
                try lvm.removeSnapshot(leftover)
            }
            // Freeze.
            switch prior {
            case .running, .other:
                downtimeStart = Date()
                if hot {
                    // Emergency sync first (kernel.sysrq=1 in the guest); a guest that ignores it is
                    // still saved consistently, only with less on its disks.
                    if (try? server.run(
                        "virsh send-key \(ShellQuote.quote(vm)) KEY_LEFTALT KEY_SYSRQ KEY_S >/dev/null; sleep 1",
                        what: "sysrq emergency sync")) == nil
                    {
                        log.warning("the emergency sync could not be sent; saving anyway")
                    }
                    try virsh.save(vm, to: ramFile!)
                    log.info("RAM state saved", metadata: ["file": "\(ramFile!)"])
                } else {
                    try shutDown(vm, virsh: virsh, profile: profile, abort: abort, log: log)
                }
            case .paused:
                try virsh.save(vm, to: ramFile!)
                log.info("paused VM: RAM state saved", metadata: ["file": "\(ramFile!)"])
            case .shutOff:
                break
            }
            for disk in snapshotDisks {
                let snap = try lvm.createSnapshot(of: volumes[disk.source]!, id: id, size: profile.snapshotSize)
                snapshots[disk.target] = snap
                log.info(
                    "snapshot created",
                    metadata: [
                        "disk": "\(disk.target)", "snapshot": "\(snap.fullName)", "size": "\(profile.snapshotSize)",
                    ])
            }
            for disk in stoppedDisks { try copy(disk, from: disk.source) }
            // Everything still to copy comes from snapshots: the VM goes back now.
            try thaw()
            for disk in snapshotDisks {
                let snap = snapshots[disk.target]!
                func overflowed(_ detail: String) -> PipelineError {
                    .failed(
                        "snapshot overflowed: \(snap.fullName) of \(disk.source) filled up during the copy (\(detail)); the copy is not consistent. Give it more room (SnapshotSize, now \(profile.snapshotSize))"
                    )
                }
                do {
                    try copy(disk, from: snap.path)
                } catch {
                    // An invalidated snapshot fails reads with EIO: say why.
                    if let status = try? lvm.snapshotIsValid(snap), !status.valid { throw overflowed(status.detail) }
                    throw error
                }
                let status = try lvm.snapshotIsValid(snap)
                guard status.valid else { throw overflowed(status.detail) }
                try lvm.removeSnapshot(snap)
                snapshots.removeValue(forKey: disk.target)
            }
            if let ramFile {
                let file = "ram.save.\(main.compression.fileExtension)"
                let r = try stream.copy(
                    source: ramFile, workDir: workDir, stageFile: nil, to: partial + "/" + file, abort: abort)
                ramImage = Manifest.StoredImage(
                    target: "ram", source: ramFile, kind: nil, format: nil, file: file,
                    rawBytes: r.rawBytes, storedBytes: r.storedBytes,
                    storedCksum: r.storedCksum, storedSHA256: r.storedSHA256)
            }
        } catch {
            failure = error
        }

        // Our snapshots go on every path (they cost the VM write performance while they exist).
        for snap in snapshots.values {
            do { try lvm.removeSnapshot(snap) } catch {
                log.error("could not remove snapshot \(snap.fullName): \(error)")
                if failure == nil { failure = error }
            }
        }
        // Thaw: always, whatever happened above.
        do {
            try thaw()
        } catch {
            store.discard(partial: partial)
            // The RAM state file stays: it is what brings the VM back (`virsh restore FILE`).
            let keep = ramFile.map { "; its RAM state is kept in \($0) on \(host): `virsh restore \($0)`" } ?? ""
            throw PipelineError.notReturnedToPriorState(
                vm: vm, host: host, prior: prior.rawValue,
                detail: "\(error)\(keep)" + (failure.map { "; the backup had failed too: \($0)" } ?? ""))
        }
        if let failure {
            discardEverything()
            throw failure
        }

        // Commit.
        let manifest = Manifest(
            vm: vm, id: id, host: host, mode: (hot ? SnapshotMode.hot : .cold).rawValue,
            requestedMode: profile.mode.rawValue,
            modeNote: modeNote, priorState: prior.rawValue, compression: main.compression.rawValue,
            started: Timestamps.iso(started), finished: Timestamps.iso(Date()),
            durationSeconds: Date().timeIntervalSince(started), downtimeSeconds: downtime,
            disks: disks.compactMap { images[$0.target] },
            excluded: excluded.map { Manifest.ExcludedDisk(target: $0.target, source: $0.source) },
            ramState: ramImage, domainXML: definition, keptOnHost: keepOnHost)
        try? FileManager.default.removeItem(atPath: partial + "/" + JobBreadcrumb.fileName)
        let committed: String
        do {
            committed = try store.commit(manifest, partial: partial)
        } catch {
            discardEverything()
            throw error
        }
        log.info("committed", metadata: ["path": "\(committed)", "downtime_s": "\(String(format: "%.1f", downtime))"])

        // The hypervisor's copy: keep exactly the newest when asked, else none.
        try finishStaging(server: server, workDir: workDir, stageDir: stageDir, id: id, keep: keepOnHost, log: log)

        // Rotate, only now that a new good backup exists.
        if let keep = configuration.schedule.entry(for: vm)?.keep {
            let removed = try store.rotate(vm: vm, keep: keep)
            if !removed.isEmpty { log.info("rotated", metadata: ["removed": "\(removed.joined(separator: ","))"]) }
        }
        return BackupReport(host: host, backupID: id, bytes: manifest.storedBytes)
    }

    func shutDown(_ vm: String, virsh: Virsh, profile: SnapshotProfile, abort: AbortFlag, log: Logger) throws {
        let timeout = profile.shutdownTimeout ?? main.shutdownTimeout
        let forceOff = profile.forceOff ?? main.forceOff
        try virsh.shutdown(vm)
        if try virsh.waitUntilOff(vm, timeout: TimeInterval(timeout), abort: abort, resendShutdownEvery: 10) {
            log.info("shut down")
            return
        }
        if abort.isRaised { throw PipelineError.aborted }
        guard forceOff else { throw PipelineError.shutdownTimedOut(vm: vm, seconds: timeout) }
        log.warning("no shutdown within \(timeout) s: forcing it off (ForceOff=yes)")
        try virsh.destroy(vm)
        guard try virsh.waitUntilOff(vm, timeout: 30, abort: AbortFlag()) else {
            throw PipelineError.failed("\(vm) is still not off after virsh destroy")
        }
    }

    func returnToPriorState(_ vm: String, prior: DomainState, virsh: Virsh, ramFile: String?, log: Logger) throws {
        let now = try virsh.state(vm)
        switch prior {
        case .running, .other:
            if now == .shutOff, let ramFile {
                try virsh.restore(from: ramFile, paused: false)
                log.info("RAM state restored, running again")
            } else if now == .shutOff {
                try virsh.start(vm)
                log.info("started again")
            }
        case .paused:
            if now == .shutOff, let ramFile {
                try virsh.restore(from: ramFile, paused: true)
                log.info("RAM state restored, paused as before")
            }
        case .shutOff:
            break
        }
    }

    /// Promotes the staged copy to `workDir/ID` and removes older staged copies, or removes all of them.
    func finishStaging(server: RemoteHost, workDir: String, stageDir: String, id: String, keep: Bool, log: Logger)
        throws
    {
        let w = ShellQuote.quote(workDir)
        // Only our own names are touched: IDs (YYYYMMDDTHHMMSSZ) and our dot-partials.
        let sweep =
            "for d in \(w)/[0-9]*T[0-9]*Z \(w)/.[0-9]*T[0-9]*Z.partial; do [ -e \"$d\" ] || continue; case \"$d\" in \(w)/\(id)) ;; *) rm -rf -- \"$d\";; esac; done"
        if keep {
            try server.run(
                "rm -f \(ShellQuote.quote(stageDir))/ram.save; mv -T \(ShellQuote.quote(stageDir)) \(w)/\(id); \(sweep)",
                what: "keeping the newest copy on the hypervisor")
            log.info("newest compressed copy kept on the hypervisor", metadata: ["path": "\(workDir)/\(id)"])
        } else {
            try server.run(
                "rm -rf \(ShellQuote.quote(stageDir)); for d in \(w)/[0-9]*T[0-9]*Z \(w)/.[0-9]*T[0-9]*Z.partial; do [ -e \"$d\" ] && rm -rf -- \"$d\"; done; true",
                what: "removing staged copies")
        }
    }

    /// After a worker died: return the VM to the state recorded before it was touched, remove the
    /// staged copies and the partial backup.
    public func recover(vm: String, jobName: String) throws -> String {
        let vmDir = store.vmDirectory(vm)
        let partials = ((try? FileManager.default.contentsOfDirectory(atPath: vmDir)) ?? []).filter {
            $0.hasPrefix(".") && $0.hasSuffix(".partial")
        }
        var notes: [String] = []
        for name in partials {
            let partial = vmDir + "/" + name
            if let crumb = JobBreadcrumb.read(from: partial), let prior = DomainState(rawValue: crumb.priorState) {
                let server = remote(crumb.host)
                let virsh = Virsh(host: server)
                try returnToPriorState(
                    vm, prior: prior, virsh: virsh, ramFile: crumb.restoreFromRAM ? crumb.remoteRAMFile : nil,
                    log: logger)
                let lvm = LVM(host: server)
                for snap in crumb.snapshots { try lvm.removeSnapshot(snap) }
                try server.run(
                    "rm -rf \(ShellQuote.quote(crumb.remoteStageDir))", what: "removing \(crumb.remoteStageDir)")
                notes.append(
                    "\(vm) returned to \(prior.rawValue) on \(crumb.host), \(crumb.snapshots.isEmpty ? "" : "snapshots removed, ")staged copy removed"
                )
            }
            store.discard(partial: partial)
            notes.append("partial backup \(name) removed")
        }
        let swept = store.sweepTemporaries(vm: vm)
        if !swept.isEmpty { notes.append("removed \(swept.joined(separator: ", "))") }
        return notes.isEmpty ? "nothing left behind" : notes.joined(separator: "; ")
    }
}

extension Logger {
    /// A copy of this logger with metadata added to every record.
    func with(_ metadata: Logger.Metadata) -> Logger {
        var copy = self
        for (k, v) in metadata { copy[metadataKey: k] = v }
        return copy
    }
}
