/// The spool's folders (Maildir + Postfix discipline):
///   tmp/     a writer creates the job here, fsyncs, then renames it into new/
///   new/     queued jobs
///   active/  claimed by rename(new/X, active/X); the claimer holds an flock on the file
///   done/    finished jobs with their result block
///   failed/  failed or unreadable jobs with the reason
///   locks/   flock slot files (SlotLocks)
///   progress/ one small file per running job: its phase and bytes (JobProgress), for `status`
public struct SpoolLayout: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public var tmp: String { root + "/tmp" }
    public var new: String { root + "/new" }
    public var active: String { root + "/active" }
    public var done: String { root + "/done" }
    public var failed: String { root + "/failed" }
    public var locks: String { root + "/locks" }
    public var progress: String { root + "/progress" }

    public var allDirectories: [String] { [tmp, new, active, done, failed, locks, progress] }

    /// Creates the folders. The spool is root's alone (0700): a job file requests a backup of any
    /// configured VM, so only the operator may write there.
    public func prepare() throws {
        try Files.makeDirectory(root, mode: 0o700, enforceMode: true)
        for dir in allDirectories { try Files.makeDirectory(dir, mode: 0o700) }
    }
}

/// Where a job is in its life.
public enum JobState: String, CaseIterable, Sendable {
    case new, active, done, failed

    func directory(in layout: SpoolLayout) -> String {
        switch self {
        case .new: return layout.new
        case .active: return layout.active
        case .done: return layout.done
        case .failed: return layout.failed
        }
    }
}
