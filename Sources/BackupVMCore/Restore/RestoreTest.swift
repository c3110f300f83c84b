import Foundation
import Logging

/// `backup_vm restore-test VM`: proves a backup boots. The newest (or a named) backup is restored as a
/// throw-away domain `VM-restoretest` on a hypervisor: its disks as files in `WorkPath/VM/restoretest/`
/// (written and checked as a restore writes them), no network interface, no host device, its serial
/// console into a file there. It is started and watched for a sign of life: a console line matching
/// the profile's RestoreTestReady, the guest agent answering a ping, or (with neither to wait for) a
/// run of RestoreTestSeconds without stopping. The result, with the boot time, goes into the backup's
/// verify record. Whatever happens, the domain and the directory are removed (a test killed before
/// that leaves them to the next test, which removes them first: the name is reserved for this).
public struct RestoreTest: Sendable {
    public let configuration: Configuration
    public let logger: Logger
    let restorer: BackupRestorer

    public init(configuration: Configuration, logger: Logger) {
        self.init(configuration: configuration, restorer: BackupRestorer(configuration: configuration, logger: logger))
    }

    /// With another restorer (tests: its hypervisors reached through a stand-in ssh).
    init(configuration: Configuration, restorer: BackupRestorer) {
        self.configuration = configuration
        self.logger = restorer.logger
        self.restorer = restorer
    }

    public struct Request: Sendable {
        public var vm: String
        public var backupID: String?
        public var host: String?
        public var abort: AbortFlag

        public init(vm: String, backupID: String? = nil, host: String? = nil, abort: AbortFlag = AbortFlag()) {
            self.vm = vm
            self.backupID = backupID
            self.host = host
            self.abort = abort
        }
    }

    public static func testName(of vm: String) -> String { vm + "-restoretest" }

    /// Refusals (no backup, a damaged image, an unknown host, the name defined elsewhere) throw before
    /// anything is made; a copy that does not boot is a record with `ok` false.
    public func run(_ request: Request) throws -> (backup: BackupRef, record: RestoreTestRecord) {
        let name = Self.testName(of: request.vm)
        let lock = try restorer.lockVM(name)
        defer { lock.release() }
        let (backup, manifest) = try restorer.selectBackup(
            BackupRestorer.Request(vm: request.vm, backupID: request.backupID))
        let hostName = request.host ?? manifest.host
        do {
            let record = try test(backup, manifest, on: hostName, name: name, request: request)
            BackupVerifier.record(record, for: backup)
            return (backup, record)
        } catch {
            // A test that failed on the backup or the hypervisor is recorded too, so a scheduled one
            // is not queued again at every tick; one that never ran (a host not configured, a name
            // in the way, an abort) leaves the last result as it was.
            guard Self.isTestFailure(error) else { throw error }
            var damaged: String?
            if case RestoreError.damagedImage = error { damaged = "\(error)" }
            BackupVerifier.record(
                RestoreTestRecord(
                    tested: Timestamps.iso(Date()), ok: false, host: hostName, name: name, bootSeconds: nil,
                    signal: nil, problem: "\(error)"), for: backup, damaged: damaged)
            throw error
        }
    }

    static func isTestFailure(_ error: Error) -> Bool {
        switch error {
        case RestoreError.hostNotConfigured, RestoreError.nameTaken, RestoreError.cannotCheckName, RestoreError.vmBusy,
            PipelineError.aborted, is RestoreTestRefusal:
            return false
        default:
            return true
        }
    }

    private func test(
        _ backup: BackupRef, _ manifest: Manifest, on hostName: String, name: String, request: Request
    ) throws -> RestoreTestRecord {
        guard configuration.main.hostServers.contains(hostName) else {
            throw RestoreError.hostNotConfigured(host: hostName, hosts: configuration.main.hostServers)
        }
        let profile = configuration.profile(for: request.vm)
        let copy = copy(of: request.vm, on: hostName)
        try copy.remove()  // a test killed earlier
        _ = try restorer.liveCopies(of: name, isNew: true, force: false)
        try StoredImageCheck(backup: backup).check(manifest.disks)
        defer { copy.removeReporting() }
        return try copy.bootAndWatch(manifest, backup: backup, profile: profile, abort: request.abort)
    }

    func copy(of vm: String, on host: String) -> RestoreTestCopy {
        RestoreTestCopy(
            host: restorer.remoteHost(host), name: Self.testName(of: vm),
            directory: WorkLayout(workPath: configuration.profile(for: vm).workPath, vm: vm).directory + "/restoretest",
            log: logger)
    }

    /// After a worker died during a test: the copy removed on every hypervisor (one that does not
    /// answer is named; the next test there removes it).
    public func removeCopies(of vm: String) throws -> String {
        // A test of this VM still running (a manual one: it holds the copy's lock) is not ours to end.
        let lock: FileLock
        do { lock = try restorer.lockVM(Self.testName(of: vm)) } catch {
            return "a restore test of \(vm) is running elsewhere (\(error)): its copy is left to it"
        }
        defer { lock.release() }
        var failed: [String] = []
        for host in configuration.main.hostServers {
            do { try copy(of: vm, on: host).remove() } catch { failed.append("\(host): \(error)") }
        }
        guard failed.isEmpty else {
            throw RestoreTestFailure(
                "the restore test's copy could not be removed on \(failed.joined(separator: "; "))")
        }
        return "the restore test's copy \(Self.testName(of: vm)) removed on every hypervisor"
    }
}
