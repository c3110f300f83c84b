import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// A backup server in a temporary directory (configuration, storage, spool) whose pipeline drives a
/// scripted hypervisor. Jobs go through the real JobRunner and spool, so a failure's reason is read
/// from the job's result record, as an operator would.
final class PipelineHarness: @unchecked Sendable {
    let dir = TempDir("pipeline")
    let hypervisor: ScriptedHypervisor
    let configuration: Configuration
    let services: Services
    let messages = CapturedMessages()
    var vm: String { hypervisor.vm }

    init(
        _ hypervisor: ScriptedHypervisor, mode: SnapshotMode = .cold, keep: Int = 3, keepOnHost: Bool = false,
        profile: String = "", main: String = ""
    ) throws {
        self.hypervisor = hypervisor
        dir.write(
            "backup_vm.d/backup_vm.conf",
            """
            HostServers=kvm1
            BackupStorage=\(dir.path)/storage
            ShutdownTimeout=1
            SyslogSocket=\(dir.path)/no-syslog
            \(main)
            """)
        dir.write("backup_vm.d/sheduler.conf", "\(hypervisor.vm) * \(keep) \(keepOnHost ? "yes" : "no")\n")
        dir.write("vmsnapshot.d/default", "Mode=cold\nWorkPath=/var/lib/backup_vm\n")
        dir.write("vmsnapshot.d/\(hypervisor.vm)", "Mode=\(mode.rawValue)\nSnapshotSize=8M\n\(profile)\n")
        configuration = try Configuration.load(directory: dir.path)
        let messages = self.messages
        let logger = Logger(label: "pipeline-test") { _ in CapturingLogHandler(messages: messages) }
        let pipeline = BackupPipeline(
            configuration: configuration, logger: logger, fleet: ScriptedFleet(hypervisors: [hypervisor]),
            pollInterval: 0.01)
        services = Services(configuration: configuration, executor: pipeline, logger: logger)
        try services.spool.prepare()
    }

    var pipeline: BackupPipeline { services.executor as! BackupPipeline }
    var store: BackupStore { BackupStore(storage: configuration.main.backupStorage) }
    var work: WorkLayout { WorkLayout(workPath: "/var/lib/backup_vm", vm: vm) }

    /// Runs one backup job as `backup_vm NAME` does; returns how it ended and its result record.
    @discardableResult
    func backup(abort: AbortFlag = AbortFlag()) throws -> (outcome: JobOutcome, result: [String: String]) {
        let job = try services.spool.createClaimed(JobRequest(vm: vm, requestedBy: "test"))
        let outcome = services.runner.run(job, slots: .wait, abort: abort)
        var state = JobState.failed
        if case .succeeded = outcome { state = .done }
        guard case .success(let file)? = services.spool.read(job.name, in: state) else {
            Issue.record("job \(job.name) is not in \(state.rawValue)/")
            return (outcome, [:])
        }
        return (outcome, file.resultFields)
    }

    /// A good backup to compare against later: its ID and every file's content.
    func goodBackup() throws -> BackupSnapshot {
        let (outcome, _) = try backup()
        guard case .succeeded = outcome else { throw HarnessError(description: "the first backup failed: \(outcome)") }
        return try BackupSnapshot(store.catalog.backups(of: vm))
    }

    /// Names in the VM's storage folder, dot-names included.
    var storageEntries: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: store.vmDirectory(vm))) ?? []).sorted()
    }

    /// The guarantees every failed backup keeps: the VM in its prior state, no snapshot of ours, no
    /// staging directory, nothing partial in the storage folder, every earlier backup as it was, and a
    /// one-line reason in the job's record.
    func expectNothingLost(
        _ run: (outcome: JobOutcome, result: [String: String]), prior: DomainState, earlier: BackupSnapshot?,
        reason: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        guard case .failed(let why) = run.outcome else {
            Issue.record("expected the job to fail, it ended \(run.outcome)", sourceLocation: sourceLocation)
            return
        }
        #expect(run.result["status"] == "failed", sourceLocation: sourceLocation)
        #expect(why.contains(reason), "reason: \(why)", sourceLocation: sourceLocation)
        #expect(run.result["reason"]?.contains(reason) == true, "\(run.result)", sourceLocation: sourceLocation)
        #expect(
            hypervisor.vmState == prior, "the VM is \(String(describing: hypervisor.vmState))",
            sourceLocation: sourceLocation)
        #expect(hypervisor.snapshots.isEmpty, "snapshots left: \(hypervisor.snapshots)", sourceLocation: sourceLocation)
        let staged = hypervisor.paths.filter { $0.hasPrefix(work.directory + "/.") }
        #expect(staged.isEmpty, "staged on the hypervisor: \(staged)", sourceLocation: sourceLocation)
        #expect(!storageEntries.contains { $0.hasPrefix(".") }, "\(storageEntries)", sourceLocation: sourceLocation)
        let now = try BackupSnapshot(store.catalog.backups(of: vm))
        #expect(now == (earlier ?? BackupSnapshot()), "earlier backups changed", sourceLocation: sourceLocation)
    }
}

struct HarnessError: Error, CustomStringConvertible { let description: String }

/// The committed backups of a VM with the bytes of every file in them.
struct BackupSnapshot: Equatable {
    var files: [String: Data] = [:]

    init() {}

    init(_ backups: [BackupRef]) throws {
        for backup in backups {
            for name in try FileManager.default.contentsOfDirectory(atPath: backup.path) {
                files[backup.id + "/" + name] = try Data(contentsOf: URL(fileURLWithPath: backup.path + "/" + name))
            }
        }
    }

    var ids: Set<String> { Set(files.keys.map { String($0.prefix { $0 != "/" }) }) }
}

/// Log messages of a test, in order.
final class CapturedMessages: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
    func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }
    func index(of text: String) -> Int? { all.firstIndex { $0.contains(text) } }
}

struct CapturingLogHandler: LogHandler {
    let messages: CapturedMessages
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        messages.append("\(event.level) \(event.message)")
    }
}
