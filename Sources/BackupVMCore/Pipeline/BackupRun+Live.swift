import Foundation

/// Mode=live: the VM keeps running. A pull-mode backup job of libvirt fixes every disk's content at
/// the moment it begins (copy-before-write into scratch files); each disk is read from its NBD export
/// into the same compression, ssh and checksum path as the other modes; then the job is ended and its
/// directory removed. With a guest agent the file systems are frozen for the moment of the begin only.
extension BackupRun {
    /// Begins the job around a quiesce (ending a stale job of ours first). Returns the running job.
    func startLiveJob() throws -> LiveJob {
        let directory = plan.work.liveDirectory(plan.id)
        var endedStale = false
        while true {
            if abort.isRaised { throw PipelineError.aborted }
            liveJobMayRun = true
            let begin = try beginQuiesced(in: directory)
            switch begin.outcome {
            case .begun(let job):
                log.info(
                    "live backup job started",
                    metadata: ["socket": "\(job.socket)", "consistency": "\(consistency?.rawValue ?? "?")"])
                let watch = ScratchWatch(
                    hypervisor: hypervisor, vm: plan.vm, directory: job.directory, interval: scratchPollInterval,
                    log: log)
                scratchWatch = watch
                watch.start()
                return job
            case .running(let socket):
                guard !endedStale, let stale = staleJobDirectory(socket: socket) else {
                    throw LiveBackupError.foreignJob(vm: plan.vm, host: plan.host, socket: socket)
                }
                // A job of an earlier run of ours whose worker died before recovery got to it.
                log.warning("ending a leftover backup job of an earlier run", metadata: ["directory": "\(stale)"])
                try hypervisor.endBackupJob(plan.vm, directory: stale)
                endedStale = true
            }
        }
    }

    /// One begin with its quiesce, and what it means for consistency and for the thaw. A script cut
    /// off by its timeout may have left the file systems frozen: every path then thaws them.
    func beginQuiesced(in directory: String) throws -> LiveBegin {
        let begin: LiveBegin
        do {
            begin = try hypervisor.beginBackupJob(
                LiveJobRequest(
                    vm: plan.vm, directory: directory, disks: plan.disks, excluded: plan.excluded.map(\.target),
                    quiesce: true, freezeTimeout: plan.freezeTimeout))
        } catch let error as LiveBackupError {
            // A freeze that timed out may complete in the guest after the script's thaw: thaw again.
            switch error {
            case .thawFailed, .freezeTimeout: filesystemsFrozen = true
            default: break
            }
            throw error
        } catch let error as RemoteError {
            if case .timedOut = error { filesystemsFrozen = true }
            throw error
        }
        if let scratch = begin.scratch {
            log.info(
                "room for the scratch files checked",
                metadata: [
                    "available": "\(scratch.available)", "worst_case": "\(scratch.needed)",
                    "other_jobs": "\(scratch.others)",
                ])
        }
        switch begin.quiesce {
        case .frozen(let count, let milliseconds)?:
            consistency = .application
            quiesceSeconds = milliseconds.map { Double($0) / 1000 }
            log.info(
                "file systems frozen by the guest agent for the begin",
                metadata: ["count": "\(count)", "frozen_ms": "\(milliseconds.map(String.init) ?? "not thawed")"])
        case .unavailable(let why, let synced)?:
            consistency = .crash
            let sync = synced ? "after the sysrq emergency sync" : "the sysrq emergency sync could not be sent"
            log.info("no guest agent answered (\(why)): crash-consistent backup, \(sync)")
        case nil:
            break
        }
        if begin.thawFailed {
            filesystemsFrozen = true
            try unquiesce()
        }
        return begin
    }

    /// The directory of a running job if it is one of ours for this VM (`WORK/VM/.ID.live/nbd.sock`
    /// with an ID of ours); nil for anyone else's.
    func staleJobDirectory(socket: String) -> String? {
        let directory = (socket as NSString).deletingLastPathComponent
        let name = (directory as NSString).lastPathComponent
        guard socket == LiveJob.socket(in: directory), name.hasPrefix("."), name.hasSuffix(".live"),
            Timestamps.parseCompact(Substring(name.dropFirst().dropLast(5))) != nil,
            directory == plan.work.liveDirectory(String(name.dropFirst().dropLast(5)))
        else { return nil }
        return directory
    }

    /// Thaws file systems that a begin left frozen, trying three times: a guest left frozen hangs on
    /// its next write.
    func unquiesce() throws {
        guard filesystemsFrozen else { return }
        var attempt = 1
        while true {
            do {
                try hypervisor.thawFilesystems(plan.vm)
                break
            } catch  where attempt < 3 {
                log.warning("thawing the file systems failed (attempt \(attempt) of 3): \(error)")
                attempt += 1
                Thread.sleep(forTimeInterval: pollInterval * 2)
            }
        }
        filesystemsFrozen = false
        log.info("file systems thawed")
    }

    /// Every disk from its export: the guest-visible content at the job's start, raw whatever the
    /// disk's format (a qcow2 disk is written back as qcow2 by a restore).
    func copyExports(of job: LiveJob) throws {
        for disk in plan.disks {
            guard let export = job.exports[disk.target] else {
                throw LiveBackupError.noExport(vm: plan.vm, target: disk.target)
            }
            if abort.isRaised { throw PipelineError.aborted }
            working(on: disk.target)
            if chunkSession != nil {
                try storeChunked(
                    disk, from: .export(uri: job.uri(export: export)), volume: plan.volumes[disk.target]?.fullName,
                    content: .raw)
                continue
            }
            let file = BackupNames.image(target: disk.target, format: .raw, compression: compression)
            let t0 = Date()
            let r = try hypervisor.copyExport(
                export, of: job, scratch: plan.stagingDirectory,
                stageFile: plan.keepOnHost ? plan.work.stagedImage(plan.id, file: file) : nil,
                to: partial + "/" + file, abort: abort)
            logCopied(disk, from: "export \(export)", r, since: t0)
            images[disk.target] = Manifest.StoredImage(
                target: disk.target, source: disk.source, kind: disk.kind, format: disk.format, file: file,
                rawBytes: r.rawBytes, storedBytes: r.storedBytes, storedCksum: r.storedCksum,
                storedSHA256: r.storedSHA256, volume: plan.volumes[disk.target]?.fullName, content: .raw)
        }
    }

    /// On every path: the watch stopped, the file systems thawed, the job ended (retried: libvirtd
    /// may be restarting) and its directory removed, the guest checked. A job that cannot be ended
    /// keeps the breadcrumb for its recovery. A failure here becomes the backup's failure unless it
    /// had failed already; what the watch had to do, or a guest that qemu paused, always does.
    func cleanUpLiveJob(_ failure: inout Error?) {
        if let trip = scratchWatch?.stop() { failure = trip }
        scratchWatch = nil
        if filesystemsFrozen {
            do { try unquiesce() } catch {
                log.critical("the file systems of \(plan.vm) may still be frozen: \(error)")
                markForAttention(error)
                if failure == nil { failure = error }
            }
        }
        if liveJobMayRun, let directory = plan.liveDirectory {
            do {
                try endLiveJobRetrying(directory)
                liveJobMayRun = false
                log.info("live backup job ended")
            } catch {
                // Its scratch files may keep growing: recovery must end it (JobBreadcrumb.liveDirectory).
                liveJobStranded = true
                do { try record(.unended) } catch {
                    log.error("could not record the unended job in the breadcrumb: \(error)")
                }
                let stranded = LiveBackupError.jobNotEnded(
                    vm: plan.vm, host: plan.host, directory: directory, cause: "\(error)",
                    after: failure.map { "\($0)" })
                log.critical("\(stranded)")
                failure = stranded
            }
        }
        if plan.mode == .live { checkGuest(&failure) }
    }

    /// Ends the job, trying five times over about 40 s (a libvirtd restart takes seconds; the
    /// connection to the host may come back).
    func endLiveJobRetrying(_ directory: String) throws {
        var attempt = 1
        while true {
            do {
                try hypervisor.endBackupJob(plan.vm, directory: directory)
                return
            } catch  where attempt < Self.endAttempts.count {
                log.warning(
                    "ending the live backup job failed (attempt \(attempt) of \(Self.endAttempts.count)): \(error)")
                Thread.sleep(forTimeInterval: pollInterval * Self.endAttempts[attempt])
                attempt += 1
            }
        }
    }

    /// Pauses before each attempt to end a job, in poll intervals (0.5 s in production).
    static let endAttempts: [Double] = [0, 4, 10, 20, 40]

    /// After the job: was the guest paused by a failed write meanwhile (a full scratch file system
    /// pauses it, with libvirt's default error policy)? Such a guest is resumed and the backup fails
    /// naming it; one that stays paused marks the VM. A state that cannot be read fails the backup:
    /// it cannot be told that the guest was not hurt.
    func checkGuest(_ failure: inout Error?) {
        let now: DomainCondition?
        do {
            now = try guestCondition()
        } catch {
            log.error("cannot tell whether \(plan.vm) was paused during its live backup: \(error)")
            if failure == nil { failure = error }
            return
        }
        var outcome = failure as? LiveBackupError
        if let now, now.pausedByIOError {
            outcome = ScratchWatch.resume(plan.vm, now, on: hypervisor, log: log)
            // A job still running fails the resumed write again: say so, and keep its story.
            if case .jobNotEnded? = failure as? LiveBackupError,
                case .pausedByIOError(let vm, let host, let condition, false, let detail)? = outcome, let failure
            {
                outcome = .pausedByIOError(
                    vm: vm, host: host, condition: condition, resumed: false, detail: "\(detail); \(failure)")
            }
        } else if case .pausedByIOError(let vm, let host, let condition, false, _)? = outcome, now?.state == .running {
            // The watch's resume failed at first; the guest runs now.
            outcome = .pausedByIOError(vm: vm, host: host, condition: condition, resumed: true, detail: "")
        } else if let now, now.state != .running {
            log.warning("\(plan.vm) is \(now.description) after its live backup (not by this backup)")
        }
        guard case .pausedByIOError(_, _, _, let resumed, _)? = outcome, let paused = outcome else { return }
        log.critical("\(paused)")
        if !resumed { markForAttention(paused) }
        failure = paused
    }

    /// The domain's condition, asked up to three times (libvirtd may be restarting).
    func guestCondition() throws -> DomainCondition? {
        var attempt = 1
        while true {
            do { return try hypervisor.condition(plan.vm) } catch  where attempt < 3 {
                log.warning("cannot tell the state of \(plan.vm) (attempt \(attempt) of 3): \(error)")
                attempt += 1
                Thread.sleep(forTimeInterval: pollInterval * 4)
            }
        }
    }
}
