import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A queued job as seen in a listing of new/.
public struct PendingJob: Sendable, Equatable {
    public let name: String
    public let queuedAt: Date
}

/// The job queue on disk. Every transition is a rename(2) within one file system, so a job is in
/// exactly one folder at any moment; the directory listing, not any in-memory state, is the truth.
public struct Spool: Sendable {
    public let layout: SpoolLayout

    public init(root: String) { layout = SpoolLayout(root: root) }

    public var locks: SlotLocks { SlotLocks(directory: layout.locks) }

    public func prepare() throws { try layout.prepare() }

    // MARK: - Writing jobs

    /// A fresh, unique, sortable job name: `TIMESTAMP.PID.RANDOM.VM`.
    static func newJobName(vm: String, date: Date = Date()) -> String {
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(Timestamps.compact(date)).\(getpid()).\(random).\(vm)"
    }

    /// Queues a backup of `vm`: written in tmp/, fsynced, renamed into new/. Returns the job's name.
    @discardableResult
    public func enqueue(_ request: JobRequest) throws -> String {
        precondition(SafeName.isValidVMName(request.vm), "callers validate VM names")
        let name = Spool.newJobName(vm: request.vm)
        let tmpPath = layout.tmp + "/" + name
        try Files.writeNewFile(tmpPath, contents: request.serialized())
        guard rename(tmpPath, layout.new + "/" + name) == 0 else {
            let error = SystemError("rename into new/", path: tmpPath)
            unlink(tmpPath)
            throw error
        }
        Files.syncDirectory(layout.new)
        return name
    }

    /// A job that starts claimed: the manual `backup_vm NAME` run puts itself into active/ directly
    /// (so `status` shows it and a crash is recovered like a daemon's) without passing through new/,
    /// where a daemon could take it.
    public func createClaimed(_ request: JobRequest) throws -> ClaimedJob {
        let name = Spool.newJobName(vm: request.vm)
        let tmpPath = layout.tmp + "/" + name
        try Files.writeNewFile(tmpPath, contents: request.serialized())
        let fd = open(tmpPath, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw SystemError("open", path: tmpPath) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw SystemError("flock", path: tmpPath)
        }
        guard rename(tmpPath, layout.active + "/" + name) == 0 else {
            let error = SystemError("rename into active/", path: tmpPath)
            close(fd)
            throw error
        }
        Files.syncDirectory(layout.active)
        return ClaimedJob(
            name: name, layout: layout, fd: fd,
            parsed: .success(
                JobFile(
                    request: request, recoveries: 0, resultStatus: nil, resultFields: [:])))
    }

    // MARK: - Reading the queue

    /// Jobs in new/, oldest first (by the time they arrived; rename keeps the writer's mtime, so a job
    /// put back into new/ keeps its place). Empty files younger than a few seconds are still being
    /// written by hand (`cat > spool/new/x`) and are left for the next pass.
    public func pendingJobs(now: Date = Date()) throws -> [PendingJob] {
        var jobs: [PendingJob] = []
        for name in try Files.visibleEntries(layout.new) {
            var st = stat()
            guard lstat(layout.new + "/" + name, &st) == 0 else { continue }
            let mtime = Date(
                timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
            if st.st_size == 0 && now.timeIntervalSince(mtime) < 5 { continue }
            jobs.append(PendingJob(name: name, queuedAt: mtime))
        }
        return jobs.sorted { ($0.queuedAt, $0.name) < ($1.queuedAt, $1.name) }
    }

    /// Reads a queued job without claiming it (to learn its VM for scheduling decisions).
    public func peek(_ name: String) -> JobFile? {
        guard let bytes = Files.readRegularFile(layout.new + "/" + name, limit: JobFile.maxRecordSize) else {
            return nil
        }
        return try? JobFile.parse(bytes)
    }

    /// Names of the jobs in one state.
    public func names(in state: JobState) -> [String] {
        ((try? Files.visibleEntries(state.directory(in: layout))) ?? []).sorted()
    }

    /// Reads a job file in any state.
    public func read(_ name: String, in state: JobState) -> Result<JobFile, JobFile.ParseError>? {
        // Not followed, not blocked on, not read whole: a link, FIFO or huge file in the spool is
        // reported as unreadable (a link to /dev/zero or a FIFO once hung the tick and the daemon).
        guard let bytes = Files.readRegularFile(state.directory(in: layout) + "/" + name, limit: JobFile.maxRecordSize)
        else {
            guard Files.exists(state.directory(in: layout) + "/" + name) else { return nil }
            return .failure(JobFile.ParseError(description: "not a regular file; expected a small text file"))
        }
        return Result { () throws(JobFile.ParseError) in try JobFile.parse(bytes) }
    }

    /// Is a job for `vm` queued or running?
    public func hasOpenJob(for vm: String) -> Bool { vmsWithOpenJobs().contains(vm) }

    /// The VMs with a job queued or running, in one pass over new/ and active/: the cron tick and
    /// `status` ask this once for all VMs (asking per VM read every job file once per VM: 2,000 VMs
    /// with 2,000 queued jobs took over 30 s).
    public func vmsWithOpenJobs() -> Set<String> {
        var vms = Set<String>()
        for state in [JobState.new, .active] {
            for name in names(in: state) {
                if case .success(let job)? = read(name, in: state) { vms.insert(job.request.vm) }
            }
        }
        return vms
    }

    // MARK: - Claiming

    /// Claims a queued job: lock the file, then rename it into active/. nil when another worker was
    /// faster (the loser sees the lock taken or ENOENT on the rename and moves on).
    public func claim(_ name: String) throws -> ClaimedJob? {
        let newPath = layout.new + "/" + name
        let activePath = layout.active + "/" + name
        let fd = open(newPath, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            // A symlink or a file we cannot open: move it aside so it does not block the queue.
            if errno == ELOOP || errno == EACCES {
                let reason =
                    errno == ELOOP ? "job is a symbolic link; expected a regular file" : "job file cannot be opened"
                if rename(newPath, layout.failed + "/" + name) == 0 {
                    let note = open(
                        layout.failed + "/." + name + ".reason", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                    if note >= 0 {
                        try? Files.writeAll(note, Array((reason + "\n").utf8), path: name)
                        close(note)
                    }
                }
                return nil
            }
            throw SystemError("open", path: newPath)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        guard rename(newPath, activePath) == 0 else {
            let e = errno
            close(fd)
            if e == ENOENT { return nil }
            throw SystemError("rename into active/", path: newPath, errno: e)
        }
        // The name may have been reused between our open and our rename (a job finished and an
        // operator dropped a new file with the same name): make sure we own what we moved.
        var mine = stat()
        var moved = stat()
        fstat(fd, &mine)
        if lstat(activePath, &moved) != 0 || mine.st_ino != moved.st_ino || mine.st_dev != moved.st_dev {
            _ = rename(activePath, newPath)
            close(fd)
            return nil
        }
        return ClaimedJob(name: name, layout: layout, fd: fd, parsed: Spool.parseOpenJob(fd, path: activePath))
    }

    /// Takes over an active/ job whose owner is gone (its flock can be taken). nil while it is owned.
    public func adoptOrphan(_ name: String) throws -> ClaimedJob? {
        let path = layout.active + "/" + name
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open", path: path)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        // Still there? (Its owner may have moved it on between our open and our lock.)
        var mine = stat()
        var current = stat()
        fstat(fd, &mine)
        guard lstat(path, &current) == 0, mine.st_ino == current.st_ino else {
            close(fd)
            return nil
        }
        return ClaimedJob(name: name, layout: layout, fd: fd, parsed: Spool.parseOpenJob(fd, path: path))
    }

    /// Reads and parses a job file we hold open (and locked); a read error is a parse failure, so the
    /// job is failed with the reason instead of crashing anything.
    static func parseOpenJob(_ fd: Int32, path: String) -> Result<JobFile, JobFile.ParseError> {
        do {
            let bytes = try Files.readAll(fd, limit: JobFile.maxRecordSize, path: path)
            return Result { () throws(JobFile.ParseError) in try JobFile.parse(bytes) }
        } catch {
            return .failure(JobFile.ParseError(description: "cannot read job file: \(error)"))
        }
    }

    // MARK: - Housekeeping

    /// Removes files left in tmp/ by writers that died before their rename (Maildir's 36 hours).
    @discardableResult
    public func sweepTmp(olderThan age: TimeInterval, now: Date = Date()) -> [String] {
        sweep(layout.tmp, olderThan: age, now: now, includeDotFiles: true)
    }

    /// Removes finished job records older than the retention.
    @discardableResult
    public func sweepFinished(olderThan age: TimeInterval, now: Date = Date()) -> [String] {
        sweep(layout.done, olderThan: age, now: now, includeDotFiles: false)
            + sweep(layout.failed, olderThan: age, now: now, includeDotFiles: true)
    }

    private func sweep(_ dir: String, olderThan age: TimeInterval, now: Date, includeDotFiles: Bool) -> [String] {
        var removed: [String] = []
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        for name in entries where includeDotFiles || !name.hasPrefix(".") {
            let path = dir + "/" + name
            if let mtime = Files.modificationTime(path), now.timeIntervalSince(mtime) > age, unlink(path) == 0 {
                removed.append(name)
            }
        }
        return removed
    }
}
