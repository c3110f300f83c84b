import Foundation

/// What a finished backup reports back to the spool's result record.
public struct BackupReport: Sendable, Equatable {
    public var host: String
    public var backupID: String?
    public var bytes: Int64
    /// What failed after the commit (the backup itself is good).
    public var warnings: [String]

    public init(host: String, backupID: String?, bytes: Int64, warnings: [String] = []) {
        self.host = host
        self.backupID = backupID
        self.bytes = bytes
        self.warnings = warnings
    }
}

/// Asked by a running job between steps: has the daemon been told to abort (a second SIGTERM)?
/// A pipeline that sees it rolls back (VM to its prior state, snapshots removed) and fails the job.
public final class AbortFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    private let parent: AbortFlag?
    public init() { parent = nil }
    /// A flag that is raised with `parent` and can also be raised alone: it ends one group of
    /// commands (the other disks of a restore when one fails) without raising the whole.
    public init(following parent: AbortFlag) { self.parent = parent }
    public func raise() { lock.withLock { raised = true } }
    public var isRaised: Bool { lock.withLock { raised } || parent?.isRaised == true }
}

/// A restore test that did not boot: the job's reason.
public struct RestoreTestFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension BackupExecutor {
    /// Executors of the spool's tests run backups only.
    public func restoreTest(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw RestoreTestFailure("this executor runs no restore tests")
    }

    public func recoverRestoreTest(vm: String) throws -> String { "nothing to remove" }

    /// Executors of the spool's tests leave nothing running on a hypervisor.
    public func strandedJobs() -> [String] { [] }
}

/// What the spool machinery needs from the backup pipeline. The real pipeline implements it over
/// ssh; tests of the spool plug in a scripted one. Every method may block (it runs external
/// commands): callers run it on a thread of its own, never on the concurrency pool.
public protocol BackupExecutor: Sendable {
    /// The hypervisor on which `vm` is to be backed up now (it may have migrated).
    func locate(vm: String) throws -> String
    /// Runs the whole pipeline for `vm` on `host`. On error the VM is already back in the state it had
    /// before, our snapshots are removed and nothing partial is visible as a backup. `progress` is
    /// told each phase and how to count the copy's bytes (`backup_vm status`).
    func backup(vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?) throws
        -> BackupReport
    /// Restores `vm`'s newest backup as a throw-away domain on `host`, boots it and removes it
    /// (RestoreTest); throws when it did not boot. The report names the backup tested.
    func restoreTest(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport
    /// After a worker died during a restore test: its throw-away copy removed wherever it is.
    func recoverRestoreTest(vm: String) throws -> String
    /// Verifies `vm`'s stored backups on this server (ScheduledVerify: those not verified within its
    /// VerifyEveryDays); throws when one of them is damaged. No hypervisor is asked.
    func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport
    /// Cleans up after a job whose worker died mid-way (VM back to its prior state, our snapshots and
    /// partial files removed). Returns what it did, for the job's record.
    func recover(vm: String, jobName: String) throws -> String
    /// VMs whose failed backup left a job running on a hypervisor that it could not end (a live
    /// job's end failed: libvirtd restarting, the connection cut): `recover` ends it.
    func strandedJobs() -> [String]
}
