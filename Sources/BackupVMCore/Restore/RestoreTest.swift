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
        self.configuration = configuration
        self.logger = logger
        restorer = BackupRestorer(configuration: configuration, logger: logger)
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
        guard configuration.main.hostServers.contains(hostName) else {
            throw RestoreError.hostNotConfigured(host: hostName, hosts: configuration.main.hostServers)
        }
        let profile = configuration.profile(for: request.vm)
        let copy = RestoreTestCopy(
            host: restorer.remoteHost(hostName), name: name,
            directory: WorkLayout(workPath: profile.workPath, vm: request.vm).directory + "/restoretest", log: logger)
        try copy.remove()  // a test killed earlier
        _ = try restorer.liveCopies(of: name, isNew: true, force: false)
        try StoredImageCheck(backup: backup).check(manifest.disks)
        let record: RestoreTestRecord
        do {
            defer { copy.removeReporting() }
            record = try copy.bootAndWatch(
                manifest, backup: backup, profile: profile,
                hasAgent: manifest.domainXML.contains("org.qemu.guest_agent.0"),
                abort: request.abort)
        }
        BackupVerifier.record(record, for: backup)
        return (backup, record)
    }
}
