import Foundation
import Logging

/// The real hypervisor: virsh, LVM and the streaming script over ssh, all commands of one job sharing
/// one connection (SSHConnectionShare), which `close()` ends.
public final class SSHHypervisor: Hypervisor, @unchecked Sendable {
    public let host: RemoteHost
    private let share: SSHConnectionShare?
    private let virsh: Virsh
    private let lvm: LVM
    private let stream: DiskStream
    private let backupJob: VirshBackupJob

    public convenience init(_ name: String, main: MainConfig) throws {
        let share = try SSHConnectionShare()
        self.init(
            host: RemoteHost(name, main: main, share: share), share: share, compression: main.compression,
            level: main.compressionLevel)
    }

    init(host: RemoteHost, share: SSHConnectionShare?, compression: Compression, level: Int) {
        self.host = host
        self.share = share
        virsh = Virsh(host: host)
        lvm = LVM(host: host)
        stream = DiskStream(host: host, compression: compression, level: level)
        backupJob = VirshBackupJob(host: host)
    }

    public var name: String { host.name }

    public func inspect(_ vm: String) throws -> DomainInspection? {
        try virsh.inspect(vm).map {
            DomainInspection(state: $0.state, liveXML: $0.liveXML, inactiveXML: $0.inactiveXML)
        }
    }

    public func state(_ vm: String) throws -> DomainState? { try virsh.state(vm) }
    public func condition(_ vm: String) throws -> DomainCondition? { try virsh.condition(vm) }
    public func resume(_ vm: String) throws { try virsh.resume(vm) }

    public func blockDevices(_ devices: [String]) throws -> [String: BlockDevice] { try lvm.resolve(devices) }

    /// Reads the qcow2 header (backing_file_offset at byte 8, backing_file_size at byte 16, both
    /// big-endian) with od, which every hypervisor has, also while the image is in use.
    public func qcow2BackingFiles(_ images: [String]) throws -> [String: String] {
        guard !images.isEmpty else { return [:] }
        let script = images.map { image in
            let q = ShellQuote.quote(image)
            return """
                o=$(od -An -tu8 --endian=big -j8 -N8 \(q) | tr -d ' '); if [ "${o:-0}" != 0 ]; then \
                n=$(od -An -tu4 --endian=big -j16 -N4 \(q) | tr -d ' '); printf '%s\\t%s\\n' \(q) \
                "$(dd if=\(q) bs=1 skip="$o" count="${n:-0}" status=none | tr -cd '[:print:]')"; fi
                """
        }.joined(separator: "; ")
        let out = try host.run(script, what: "reading qcow2 headers")
        var backing: [String: String] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: "\t", maxSplits: 1).map(String.init)
            if f.count == 2, images.contains(f[0]) { backing[f[0]] = f[1] }
        }
        return backing
    }

    public func shutdown(_ vm: String) throws { try virsh.shutdown(vm) }
    public func destroy(_ vm: String) throws { try virsh.destroy(vm) }
    public func start(_ vm: String) throws { try virsh.start(vm) }
    public func save(_ vm: String, to file: String) throws { try virsh.save(vm, to: file) }
    public func restore(from file: String, paused: Bool) throws { try virsh.restore(from: file, paused: paused) }
    public func sendEmergencySync(_ vm: String) throws { try virsh.sendEmergencySync(vm) }

    public func createSnapshot(_ snapshot: LogicalVolume, of origin: LogicalVolume, size: String) throws {
        try lvm.createSnapshot(named: snapshot.lv, of: origin, size: size)
    }
    public func snapshotStatus(_ snapshot: LogicalVolume) throws -> SnapshotStatus {
        try lvm.snapshotStatus(snapshot)
    }
    public func removeSnapshot(_ snapshot: LogicalVolume) throws { try lvm.removeSnapshot(snapshot) }
    public func leftoverSnapshots(of origins: [LogicalVolume]) throws -> [LogicalVolume] {
        try lvm.leftoverSnapshots(of: origins)
    }

    public func makeDirectory(_ path: String?, inWorkPath workPath: String) throws {
        let make = path.map { "; mkdir -p \(ShellQuote.quote($0))" } ?? ""
        try host.run(
            WorkPathGuard.require(workPath) + make,
            what: "checking WorkPath \(workPath)\(path.map { " and creating \($0)" } ?? "")")
    }

    public func removeDirectory(_ path: String) throws {
        try host.run("rm -rf \(ShellQuote.quote(path))", what: "removing \(path)")
    }

    public func copyImage(
        _ source: String, scratch: String, stageFile: String?, to destination: String, abort: AbortFlag
    ) throws -> TransferredImage {
        try stream.copy(source: source, workDir: scratch, stageFile: stageFile, to: destination, abort: abort)
    }

    public func liveSupport() throws -> LiveSupport { try backupJob.support() }
    public func thawFilesystems(_ vm: String) throws { try backupJob.thaw(vm: vm) }

    public func beginBackupJob(_ request: LiveJobRequest) throws -> LiveBegin { try backupJob.begin(request) }

    public func endBackupJob(_ vm: String, directory: String) throws { try backupJob.end(vm: vm, directory: directory) }

    public func liveScratch(_ vm: String, directory: String) throws -> ScratchReading {
        try backupJob.scratch(vm: vm, directory: directory)
    }

    public func copyExport(
        _ export: String, of job: LiveJob, scratch: String, stageFile: String?, to destination: String,
        abort: AbortFlag
    ) throws -> TransferredImage {
        try stream.copy(
            image: .export(uri: job.uri(export: export)), workDir: scratch, stageFile: stageFile, to: destination,
            abort: abort)
    }

    public func sendChunks(
        _ image: ImageSource, helper: ChunkHelper, workPath: String, scratch: String, into staging: ChunkStaging,
        abort: AbortFlag
    ) throws -> ChunkReceipt {
        try ChunkStream(host: host, helper: helper, workPath: workPath).send(
            image, scratch: scratch, into: staging, abort: abort)
    }

    public func keepStagedCopy(_ work: WorkLayout, id: String) throws {
        let staging = ShellQuote.quote(work.stagingDirectory(id))
        let ram = ShellQuote.quote(work.ramFile(id))
        let kept = ShellQuote.quote(work.keptCopy(id))
        try host.run(
            "rm -f \(ram); mv -T \(staging) \(kept); \(sweep(work, except: id))",
            what: "keeping the newest copy on the hypervisor")
    }

    public func removeStagedCopies(_ work: WorkLayout, id: String) throws {
        try host.run(
            "rm -rf \(ShellQuote.quote(work.stagingDirectory(id))); \(sweep(work, except: nil)); true",
            what: "removing staged copies")
    }

    /// A loop removing kept copies and staging directories of ours in the VM's working directory
    /// (only our own names: IDs and dot-partials), except the kept copy `except`.
    private func sweep(_ work: WorkLayout, except id: String?) -> String {
        let w = ShellQuote.quote(work.directory)
        let keep = id.map { "\(w)/\(ShellQuote.quote($0))) ;; " } ?? ""
        return """
            for d in \(w)/\(WorkLayout.keptCopyGlob) \(w)/\(WorkLayout.stagingGlob); do \
            [ -e "$d" ] || continue; case "$d" in \(keep)*) rm -rf -- "$d";; esac; done
            """
    }

    public func close() { share?.close() }
}

/// The configured hypervisors over ssh: located with VMLocator (every host asked at once).
public struct SSHFleet: Fleet {
    public let main: MainConfig
    public let logger: Logger

    public init(main: MainConfig, logger: Logger) {
        self.main = main
        self.logger = logger
    }

    public func locate(_ vm: String) throws -> String {
        try VMLocator(hosts: main.hostServers.map { RemoteHost($0, main: main) }, logger: logger).locate(vm).host
    }

    public func connect(_ host: String) throws -> any Hypervisor { try SSHHypervisor(host, main: main) }
}
