import Foundation

@testable import BackupVMCore

/// A hypervisor in memory for the pipeline's unit tests: one VM with a state and disks (files, or
/// LVs), our snapshots, the files and directories of the working path, and a log of every call. A
/// test makes any kind of call fail (at its Nth occurrence, or always) and can run code at a call
/// (e.g. to sabotage the storage folder at the last moment). Images "copied" from it are real files
/// written into the destination, so the storage side of the pipeline runs for real.
final class ScriptedHypervisor: Hypervisor, @unchecked Sendable {
    enum Call: String, CaseIterable, Sendable {
        case inspect, state, blockDevices, qcow2BackingFiles, shutdown, destroy, start, save, restore,
            sendEmergencySync
        case createSnapshot, snapshotStatus, removeSnapshot, leftoverSnapshots, makeDirectory, removeDirectory
        case copyImage, keepStagedCopy, removeStagedCopies
        case liveSupport, thawFilesystems, beginBackupJob, endBackupJob, copyExport
        case condition, resume, liveScratch
        case sendChunks
    }

    struct Injected: Error, CustomStringConvertible {
        let call: Call
        var description: String { "injected failure of \(call.rawValue)" }
    }

    let name: String
    let vm: String
    private let lock = NSLock()
    private var _state: DomainState?
    var xml: String
    /// LV disks by device path.
    let volumes: [String: LogicalVolume]
    private var _snapshots: [String: LogicalVolume] = [:]  // full name -> snapshot
    private var _paths: Set<String> = []  // files and directories in working paths
    private var _calls: [Call] = []
    private var failAt: [Call: Set<Int>] = [:]
    private var failAlways: Set<Call> = []
    private var hooks: [Call: () -> Void] = [:]
    /// What an injected failure says, word for word, as a helper's failure frame or a guest's console
    /// would (default: a RemoteError "injected failure of CALL").
    var failureText: String?
    /// Does the guest act on the ACPI power button?
    var obeysACPI = true
    /// A slow guest: after the first ACPI request it goes off only this many seconds later.
    var offAfterSeconds: TimeInterval?
    private var shutdownRequestedAt: Date?
    /// Snapshots (full names) that LVM reports as overflowed.
    var overflowed: Set<String> = []
    /// Device paths that are links (path -> the device it leads to).
    var links: [String: String] = [:]
    /// qcow2 images (path -> backing file) that are overlays.
    var backingFiles: [String: String] = [:]
    /// Live backups: what the host offers, whether the guest has an agent, and the state of both.
    var live = LiveSupport(libvirt: "9.0.0", qemu: "7.2.0", missing: [])
    var hasAgent = false
    private var _frozen = false
    /// The directory of the backup job running on the domain (a job of anyone else: its socket).
    private var _jobDirectory: String?
    private var _foreignJobSocket: String?
    /// libvirt's reason for the state (`I/O error` with `.paused`: qemu paused the guest on a failed write).
    private var _reason = ""
    /// The room on the job directory's file system, and what each disk's scratch may grow to.
    var scratchAvailable: Int64 = 64 << 30
    var scratchNeedPerDisk: Int64 = 1 << 30
    /// What the job's scratch holds now (the watch's reading); a test raises it to fill the file system.
    var scratchUsed: Int64 = 0
    /// Thrown by every begin (after the call is recorded): what the real script reports, e.g. FreezeTimeout.
    var beginError: Error?
    /// The requests of the begins, in order, and the running job's worst case.
    private var _requests: [LiveJobRequest] = []
    private var _jobNeed: Int64 = 0

    init(name: String = "kvm1", vm: String, state: DomainState, disks: [DomainDisk], volumes: [LogicalVolume] = []) {
        self.name = name
        self.vm = vm
        _state = state
        xml = ScriptedHypervisor.domainXML(vm, disks)
        var byPath: [String: LogicalVolume] = [:]
        for lv in volumes { byPath[lv.path] = lv }
        self.volumes = byPath
    }

    static func domainXML(_ vm: String, _ disks: [DomainDisk]) -> String {
        func escaped(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: "'", with: "&apos;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let devices = disks.map { d in
            let path = escaped(d.source)
            let source = d.kind == .file ? "<source file='\(path)'/>" : "<source dev='\(path)'/>"
            return "<disk type='\(d.kind.rawValue)' device='disk'><driver name='qemu' type='\(d.format.rawValue)'/>"
                + "\(source)<target dev='\(d.target)' bus='virtio'/></disk>"
        }
        return "<domain type='qemu'><name>\(vm)</name><devices>\(devices.joined())</devices></domain>"
    }

    // MARK: - What a test sets and reads

    func fail(_ call: Call, at occurrence: Int) { lock.withLock { failAt[call, default: []].insert(occurrence) } }
    func failAlways(_ call: Call) { lock.withLock { _ = failAlways.insert(call) } }
    func heal(_ call: Call) {
        lock.withLock {
            failAlways.remove(call)
            failAt[call] = nil
        }
    }
    func onCall(_ call: Call, _ body: @escaping () -> Void) { lock.withLock { hooks[call] = body } }

    var vmState: DomainState? {
        get {
            lock.withLock {
                advanceSlowShutdown()
                return _state
            }
        }
        set { lock.withLock { _state = newValue } }
    }
    var snapshots: [LogicalVolume] { lock.withLock { Array(_snapshots.values) } }
    var frozen: Bool { lock.withLock { _frozen } }
    var jobDirectory: String? { lock.withLock { _jobDirectory } }
    /// Seeds a backup job left by a killed worker (our directory) or started by someone else.
    func addJob(directory: String) { lock.withLock { _jobDirectory = directory } }
    func addForeignJob(socket: String) { lock.withLock { _foreignJobSocket = socket } }
    var requests: [LiveJobRequest] { lock.withLock { _requests } }
    /// qemu pauses the guest on a failed write (its scratch file system full).
    func pauseByIOError() {
        lock.withLock {
            _state = .paused
            _reason = "I/O error"
        }
    }
    var paths: Set<String> { lock.withLock { _paths } }
    var calls: [Call] { lock.withLock { _calls } }
    func count(_ call: Call) -> Int { calls.filter { $0 == call }.count }
    /// Seeds a snapshot of ours left by a killed job (or anyone else's).
    func addSnapshot(_ lv: LogicalVolume) { lock.withLock { _snapshots[lv.fullName] = lv } }
    func addPath(_ path: String) { _ = lock.withLock { _paths.insert(path) } }

    /// Records the call and throws when a failure is injected there.
    private func enter(_ call: Call) throws {
        let (fails, hook) = lock.withLock { () -> (Bool, (() -> Void)?) in
            _calls.append(call)
            let n = _calls.filter { $0 == call }.count
            return (failAlways.contains(call) || failAt[call]?.contains(n) == true, hooks[call])
        }
        hook?()
        if fails {
            if let failureText { throw ChunkTransferError.helper(failureText) }
            throw RemoteError.command(host: name, what: call.rawValue, status: 1, stderr: "\(Injected(call: call))")
        }
    }

    private func requireVM(_ vm: String) throws {
        guard vm == self.vm, vmState != nil else {
            throw RemoteError.command(host: name, what: "virsh", status: 1, stderr: "error: domain '\(vm)' not found")
        }
    }

    // MARK: - Hypervisor

    func inspect(_ vm: String) throws -> DomainInspection? {
        try enter(.inspect)
        guard vm == self.vm, let state = vmState else { return nil }
        return DomainInspection(state: state, liveXML: xml, inactiveXML: xml)
    }

    func state(_ vm: String) throws -> DomainState? {
        try enter(.state)
        return vm == self.vm ? vmState : nil
    }

    func condition(_ vm: String) throws -> DomainCondition? {
        try enter(.condition)
        guard vm == self.vm, let state = vmState else { return nil }
        return DomainCondition(state: state, reason: lock.withLock { _reason })
    }

    /// Resumes a paused guest; one paused on a failed write stays paused while its job still runs
    /// (the write fails again).
    func resume(_ vm: String) throws {
        try enter(.resume)
        try requireVM(vm)
        lock.withLock {
            guard _state == .paused else { return }
            if _reason == "I/O error" && _jobDirectory != nil { return }
            _state = .running
            _reason = "unpaused"
        }
    }

    /// A slow guest's shutdown completes when its time has come (called under the lock).
    private func advanceSlowShutdown() {
        guard let at = shutdownRequestedAt, let delay = offAfterSeconds, Date() >= at.addingTimeInterval(delay) else {
            return
        }
        if _state == .running { _state = .shutOff }
        shutdownRequestedAt = nil
    }

    /// Like LVM, it knows an LV by /dev/VG/LV and /dev/mapper/VG-LV; `links` lead other paths to a device.
    func blockDevices(_ devices: [String]) throws -> [String: BlockDevice] {
        try enter(.blockDevices)
        var answer: [String: BlockDevice] = [:]
        for path in devices {
            let volume =
                volumes[path] ?? VolumeName(path: path).flatMap { name in volumes.values.first { $0.name == name } }
            answer[path] = BlockDevice(canonical: links[path] ?? volume?.path ?? path, volume: volume)
        }
        return answer
    }

    func qcow2BackingFiles(_ images: [String]) throws -> [String: String] {
        try enter(.qcow2BackingFiles)
        return backingFiles.filter { images.contains($0.key) }
    }

    func shutdown(_ vm: String) throws {
        try enter(.shutdown)
        try requireVM(vm)
        if offAfterSeconds != nil {
            lock.withLock { if shutdownRequestedAt == nil { shutdownRequestedAt = Date() } }
        } else if obeysACPI && vmState == .running {
            vmState = .shutOff
        }
    }

    func destroy(_ vm: String) throws {
        try enter(.destroy)
        try requireVM(vm)
        vmState = .shutOff
    }

    func start(_ vm: String) throws {
        try enter(.start)
        try requireVM(vm)
        guard vmState == .shutOff else {
            throw RemoteError.command(host: name, what: "virsh start", status: 1, stderr: "domain is already active")
        }
        vmState = .running
    }

    func save(_ vm: String, to file: String) throws {
        try enter(.save)
        try requireVM(vm)
        guard vmState == .running || vmState == .paused else {
            throw RemoteError.command(host: name, what: "virsh save", status: 1, stderr: "domain is not running")
        }
        lock.withLock {
            _paths.insert(file)
            _state = .shutOff
        }
    }

    func restore(from file: String, paused: Bool) throws {
        try enter(.restore)
        guard paths.contains(file) else {
            throw RemoteError.command(host: name, what: "virsh restore", status: 1, stderr: "no such file \(file)")
        }
        vmState = paused ? .paused : .running
    }

    func sendEmergencySync(_ vm: String) throws { try enter(.sendEmergencySync) }

    func createSnapshot(_ snapshot: LogicalVolume, of origin: LogicalVolume, size: String) throws {
        try enter(.createSnapshot)
        lock.withLock { _snapshots[snapshot.fullName] = snapshot }
    }

    func snapshotStatus(_ snapshot: LogicalVolume) throws -> SnapshotStatus {
        try enter(.snapshotStatus)
        let bad = overflowed.contains(snapshot.fullName)
        return SnapshotStatus(
            valid: !bad, detail: bad ? "attr swi-I-s---, 100.00% used" : "attr swi-a-s---, 3.00% used")
    }

    func removeSnapshot(_ snapshot: LogicalVolume) throws {
        try enter(.removeSnapshot)
        _ = lock.withLock { _snapshots.removeValue(forKey: snapshot.fullName) }
    }

    func leftoverSnapshots(of origins: [LogicalVolume]) throws -> [LogicalVolume] {
        try enter(.leftoverSnapshots)
        let wanted = Set(origins.map(\.lv))
        return snapshots.filter { snap in
            BackupNames.isOurSnapshot(snap.lv)
                && wanted.contains { snap.lv.hasPrefix($0 + BackupNames.snapshotMarker) }
        }
    }

    func makeDirectory(_ path: String?, inWorkPath workPath: String) throws {
        try enter(.makeDirectory)
        if let path { addPath(path) }
    }

    func removeDirectory(_ path: String) throws {
        try enter(.removeDirectory)
        lock.withLock { _paths = _paths.filter { $0 != path && !$0.hasPrefix(path + "/") } }
    }

    func copyImage(_ source: String, scratch: String, stageFile: String?, to destination: String, abort: AbortFlag)
        throws -> TransferredImage
    {
        try enter(.copyImage)
        return try writeImage(of: source, stageFile: stageFile, to: destination, abort: abort)
    }

    /// The "copy" of copyImage and copyExport: a small real file, its real digests.
    private func writeImage(of source: String, stageFile: String?, to destination: String, abort: AbortFlag) throws
        -> TransferredImage
    {
        if abort.isRaised { throw PipelineError.aborted }
        let bytes = Array("compressed content of \(source) on \(name)\n".utf8)
        guard FileManager.default.createFile(atPath: destination, contents: Data(bytes)) else {
            throw SystemError("create", path: destination)
        }
        if let stageFile { addPath(stageFile) }
        var crc = POSIXChecksum()
        crc.update(bytes)
        // The file's real digest: a restore checks it before it touches anything (the content is no
        // real image; the lab tiers restore real ones).
        let sha = try FileDigest.sha256(ofFile: destination).digest
        return TransferredImage(
            rawBytes: 1 << 20, storedBytes: Int64(bytes.count), storedCksum: crc.finalize(), storedSHA256: sha)
    }

    func liveSupport() throws -> LiveSupport {
        try enter(.liveSupport)
        return live
    }

    func thawFilesystems(_ vm: String) throws {
        try enter(.thawFilesystems)
        lock.withLock { _frozen = false }
    }

    /// Like the begin script: a running job is reported untouched; with an agent the file systems are
    /// frozen and thawed around the begin (a thaw that is made to fail leaves them frozen).
    func beginBackupJob(_ request: LiveJobRequest) throws -> LiveBegin {
        try enter(.beginBackupJob)
        try requireVM(request.vm)
        let (directory, quiesce, targets) = (request.directory, request.quiesce, request.disks.map(\.target))
        let thawFails = lock.withLock { failAlways.contains(.thawFilesystems) }
        return try lock.withLock {
            _requests.append(request)
            if let beginError { throw beginError }
            if let socket = _foreignJobSocket ?? _jobDirectory.map(LiveJob.socket(in:)) {
                return LiveBegin(outcome: .running(socket: socket), quiesce: nil, thawFailed: false)
            }
            let need = scratchNeedPerDisk * Int64(targets.count)
            guard scratchAvailable >= need + ScratchRoom.margin else {
                throw LiveBackupError.noScratchRoom(
                    vm: request.vm, host: name, directory: directory, available: scratchAvailable, needed: need,
                    others: 0)
            }
            var quiesced: QuiesceResult?
            if quiesce {
                quiesced =
                    hasAgent
                    ? .frozen(count: 1, milliseconds: thawFails ? nil : 120)
                    : .unavailable("error: argument unsupported: QEMU guest agent is not configured", synced: true)
                _frozen = hasAgent && thawFails
            }
            _jobDirectory = directory
            _paths.insert(directory)
            let job = LiveJob(directory: directory, exports: Dictionary(uniqueKeysWithValues: targets.map { ($0, $0) }))
            _jobNeed = need
            var begin = LiveBegin(outcome: .begun(job), quiesce: quiesced, thawFailed: hasAgent && quiesce && thawFails)
            begin.scratch = LiveBegin.Scratch(available: scratchAvailable, needed: need, others: 0)
            return begin
        }
    }

    func endBackupJob(_ vm: String, directory: String) throws {
        try enter(.endBackupJob)
        lock.withLock {
            if _jobDirectory == directory {
                _jobDirectory = nil
                scratchUsed = 0
            }
            _paths = _paths.filter { $0 != directory && !$0.hasPrefix(directory + "/") }
        }
    }

    /// The room left beyond the job's worst case (as the real script counts it), and the condition.
    func liveScratch(_ vm: String, directory: String) throws -> ScratchReading {
        try enter(.liveScratch)
        return lock.withLock {
            let outstanding = _jobDirectory == directory ? max(0, _jobNeed - scratchUsed) : 0
            let condition = vm == self.vm ? _state.map { DomainCondition(state: $0, reason: _reason) } : nil
            return ScratchReading(
                available: scratchAvailable - scratchUsed, outstanding: outstanding, used: scratchUsed,
                condition: condition)
        }
    }

    func copyExport(
        _ export: String, of job: LiveJob, scratch: String, stageFile: String?, to destination: String,
        abort: AbortFlag
    ) throws -> TransferredImage {
        try enter(.copyExport)
        guard jobDirectory == job.directory else {
            throw RemoteError.command(host: name, what: "nbdcopy", status: 1, stderr: "Connection refused")
        }
        return try writeImage(of: job.uri(export: export), stageFile: stageFile, to: destination, abort: abort)
    }

    /// The chunked "copy": a real index and real chunks in the real store, of a small made-up disk
    /// (one 5 MiB image per source: a full chunk that is the same for every source of this host, a
    /// short one that is the source's own), so dedup between backups and disks happens for real.
    func sendChunks(
        _ image: ImageSource, helper: ChunkHelper, workPath: String, scratch: String, into staging: ChunkStaging,
        abort: AbortFlag
    ) throws -> ChunkReceipt {
        try enter(.sendChunks)
        if abort.isRaised { throw PipelineError.aborted }
        addPath(scratch)
        let shared = ChunkTestData.text(ChunkTestData.chunk, seed: name.count)
        let own = Array("content of \(image) on \(name)\n".utf8)
        var receipt = ChunkReceipt(
            index: ChunkIndex(size: Int64(shared.count + own.count), entries: []), wireBytes: 0, newChunks: 0,
            newStoredBytes: 0, knownChunks: 0, zeroChunks: 0)
        for content in [shared, own] {
            let digest = ChunkTestData.digest(content)
            receipt.index.entries.append(.chunk(digest))
            if try staging.has(digest) {
                receipt.knownChunks += 1
                continue
            }
            let frame = ChunkTestData.zstd(content)
            try frame.withUnsafeBytes { try staging.write(digest, frame: $0) }
            receipt.newChunks += 1
            receipt.newStoredBytes += Int64(frame.count)
            receipt.wireBytes += Int64(frame.count)
        }
        return receipt
    }

    func keepStagedCopy(_ work: WorkLayout, id: String) throws {
        try enter(.keepStagedCopy)
        lock.withLock {
            let staging = work.stagingDirectory(id)
            _paths = Set(
                _paths.compactMap { p -> String? in
                    if p == work.ramFile(id) { return nil }
                    if p == staging || p.hasPrefix(staging + "/") {
                        return work.keptCopy(id) + p.dropFirst(staging.count)
                    }
                    return p.hasPrefix(work.directory + "/") && !p.hasPrefix(work.keptCopy(id)) ? nil : p
                })
        }
    }

    func removeStagedCopies(_ work: WorkLayout, id: String) throws {
        try enter(.removeStagedCopies)
        lock.withLock { _paths = _paths.filter { !$0.hasPrefix(work.directory + "/") } }
    }

    func close() {}
}

/// The hypervisors of a test: the VM is located where it is defined.
struct ScriptedFleet: Fleet {
    let hypervisors: [ScriptedHypervisor]

    func locate(_ vm: String) throws -> String {
        guard let h = hypervisors.first(where: { $0.vm == vm && $0.vmState != nil }) else {
            throw RemoteError.protocolViolation(host: "-", what: "locate", detail: "\(vm) not found")
        }
        return h.name
    }

    func connect(_ host: String) throws -> any Hypervisor {
        guard let h = hypervisors.first(where: { $0.name == host }) else {
            throw RemoteError.connection(host: host, detail: "no such host")
        }
        return h
    }
}
