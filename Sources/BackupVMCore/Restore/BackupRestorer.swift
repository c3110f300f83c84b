import Foundation
import Logging

/// Writes a backup back onto a hypervisor and defines the domain from the stored XML. Nothing on a
/// hypervisor is touched before every stored image checks out against the manifest (size, SHA-256)
/// and the hypervisor has been asked whether every disk can go where it goes (RestorePreflight). Then
/// every disk is written beside its own (a new LV, a file beside the file) and checked as it is
/// decompressed, and only once all are complete is the VM stopped (`force`; without it a running or
/// paused VM is refused) and are the new disks swapped in (RestoreTransaction): a stream that breaks
/// off or does not check out leaves every disk and the VM as they were. With `withRAM`, a hot (or
/// paused) backup's RAM state is written to the VM's working path and `virsh restore`d, so the guest
/// continues from the saved moment instead of booting: the disks were snapshotted right after that
/// save, so they match.
public struct BackupRestorer: Sendable {
    public let configuration: Configuration
    public let logger: Logger
    /// How the hypervisors are reached: the locator's question (is a domain of this name defined
    /// there?) and the ssh client that every write and virsh command goes through. Tests put
    /// stand-ins here to see what a restore asks and whether it sends anything at all.
    let locatorQuery: VMLocator.Query
    let sshProgram: String

    public init(configuration: Configuration, logger: Logger) {
        self.init(configuration: configuration, logger: logger, locatorQuery: VMLocator.virshQuery, sshProgram: "ssh")
    }

    init(configuration: Configuration, logger: Logger, locatorQuery: @escaping VMLocator.Query, sshProgram: String) {
        self.configuration = configuration
        self.logger = logger
        self.locatorQuery = locatorQuery
        self.sshProgram = sshProgram
    }

    /// A hypervisor of HostServers, reached through `sshProgram` (with `share`: over its connection).
    func remoteHost(_ name: String, share: SSHConnectionShare? = nil) -> RemoteHost {
        RemoteHost(name, main: configuration.main, share: share, sshProgram: sshProgram)
    }

    public struct Request: Sendable {
        public var vm: String
        public var backupID: String?
        public var toHost: String?
        public var newName: String?
        public var force: Bool
        public var start: Bool
        public var withRAM: Bool
        /// Raised by SIGINT/SIGTERM/SIGHUP: a disk being written beside its own is cut off, and the restore
        /// stops before the VM is stopped, removing what it wrote.
        public var abort: AbortFlag

        public init(
            vm: String, backupID: String? = nil, toHost: String? = nil, newName: String? = nil, force: Bool = false,
            start: Bool = false, withRAM: Bool = false, abort: AbortFlag = AbortFlag()
        ) {
            self.vm = vm
            self.backupID = backupID
            self.toHost = toHost
            self.newName = newName
            self.force = force
            self.start = start
            self.withRAM = withRAM
            self.abort = abort
        }
    }

    public struct Outcome: Sendable {
        public var backupID: String
        public var host: String
        public var name: String
        public var disks: [String: String]  // target -> path written
    }

    /// The steps, in order; every refusal comes before anything is touched. Each step logs how long it
    /// took.
    public func restore(_ request: Request) throws -> Outcome {
        // The VM's lock, as a backup job takes it: no job shuts down or snapshots the VM while its
        // disks are written, and no restore starts while a job of it runs.
        let lock = try lockVM(request.newName ?? request.vm)
        defer { lock.release() }
        let started = Date()
        let (backup, manifest) = try selectBackup(request)
        let hostName = try check(request, backup: backup, manifest: manifest)
        let name = request.newName ?? request.vm
        // One ssh connection per hypervisor for all of the restore's commands, the disk streams
        // included: a new one costs a handshake each time.
        let share = try SSHConnectionShare()
        defer { share.close() }
        let host = remoteHost(hostName, share: share)
        let log = logger.with(["vm": "\(name)", "host": "\(hostName)", "backup": "\(backup.id)"])
        try checkImages(backup, manifest, whileAskingAbout: name, request: request, share: share, log: log)
        let t0 = Date()
        let id = Timestamps.compact(Date())
        let disks = try RestorePreflight(host: host, id: id).plan(
            manifest, rename: request.newName.map { (from: request.vm, to: $0) }, replacing: request.force)
        log.info("every disk fits where it goes", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
        let paths = Dictionary(disks.map { ($0.target, $0.path) }, uniquingKeysWith: { first, _ in first })
        let xml = try domainXML(manifest, backup: backup, request: request, paths: paths, log: log)
        try RestorePreflight(host: host, id: id).checkDirectories(xml, name: name)
        var transaction = RestoreTransaction(disks: disks, abort: request.abort, log: log)
        transaction.streams = configuration.main.restoreStreams
        try transaction.run(
            from: { backup.path + "/" + $0.image.file },
            stop: {
                try stopLiveCopies(
                    of: name, isNew: request.newName != nil, force: request.force, share: share, log: log)
            },
            define: { try define(xml, name: name, host: host, log: log) })
        log.info(
            "disks restored: \(disks.map { "\($0.target) -> \($0.path)" }.joined(separator: ", "))",
            metadata: ["seconds": "\(StepClock.seconds(since: started))"])
        if request.withRAM, let ram = manifest.ramState {
            try resumeFromRAM(ram, backup: backup, manifest: manifest, host: host, id: id, log: log)
        } else if request.start {
            try Virsh(host: host).start(name)
            log.info("started")
        }
        return Outcome(backupID: backup.id, host: hostName, name: name, disks: paths)
    }

    /// The stored images are read and hashed (StoredImageCheck) while every hypervisor is asked about
    /// `name` (liveCopies): neither touches anything and both take a while. A refusal of the quick
    /// questions is told first and ends the check.
    func checkImages(
        _ backup: BackupRef, _ manifest: Manifest, whileAskingAbout name: String, request: Request,
        share: SSHConnectionShare, log: Logger
    ) throws {
        let t0 = Date()
        let images = manifest.disks + (request.withRAM ? manifest.ramState.map { [$0] } ?? [] : [])
        let stop = AbortFlag(following: request.abort)
        let checking = BackgroundWork("restore image check") {
            try StoredImageCheck(backup: backup).check(images, stop: stop)
            log.info("stored images checked", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
        }
        do {
            _ = try liveCopies(of: name, isNew: request.newName != nil, force: request.force, share: share)
            log.info("asked every hypervisor about \(name)", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
        } catch {
            stop.raise()
            _ = try? checking.wait()
            throw error
        }
        try checking.wait()
    }

    func lockVM(_ name: String) throws -> FileLock {
        guard SafeName.isValidVMName(name) else { throw RestoreError.invalidName(name) }
        let spool = Spool(root: configuration.main.spoolDir)
        try spool.prepare()
        guard let lock = try spool.locks.tryAcquireVM(name) else {
            let holder = FileLock.holderText(spool.locks.vmLockPath(name)) ?? "another process"
            throw RestoreError.vmBusy(name: name, holder: holder)
        }
        lock.describeHolder("pid=\(getpid()) restore of \(name)")
        return lock
    }

    /// The requested backup (default: the newest) and its manifest.
    func selectBackup(_ request: Request) throws -> (BackupRef, Manifest) {
        let catalog = BackupCatalog(storage: configuration.main.backupStorage)
        let backups = catalog.backups(of: request.vm)
        guard let backup = request.backupID.map({ id in backups.first { $0.id == id } }) ?? backups.last else {
            if let id = request.backupID {
                throw RestoreError.noSuchBackup(vm: request.vm, id: id, have: backups.map(\.id))
            }
            throw RestoreError.noBackups(vm: request.vm, directory: catalog.directory(of: request.vm))
        }
        return (backup, try Manifest.read(backupDirectory: backup.path))
    }

    /// Refusals that need no hypervisor; returns the host to restore to.
    func check(_ request: Request, backup: BackupRef, manifest: Manifest) throws -> String {
        let hosts = configuration.main.hostServers
        let hostName = request.toHost ?? manifest.host
        guard hosts.contains(hostName) else { throw RestoreError.hostNotConfigured(host: hostName, hosts: hosts) }
        if request.withRAM {
            guard manifest.ramState != nil else {
                throw RestoreError.noRAMState(
                    vm: request.vm, id: backup.id, mode: manifest.mode, priorState: manifest.priorState)
            }
            guard request.newName == nil else { throw RestoreError.ramStateWithNewName }
        }
        let name = request.newName ?? request.vm
        guard SafeName.isValidVMName(name) else { throw RestoreError.invalidName(name) }
        return hostName
    }

    /// Never write under a running VM, nor create a second running copy elsewhere, unless told. A copy
    /// under a new name must not exist anywhere yet: its disks would be written over the existing
    /// domain's (the name mapping reuses them) before `define` failed. Returns the hosts on which the
    /// VM runs or is paused (only with `force`: without, that is a refusal).
    func liveCopies(of name: String, isNew: Bool, force: Bool, share: SSHConnectionShare? = nil) throws -> [String] {
        let locator = VMLocator(
            hosts: configuration.main.hostServers.map { remoteHost($0, share: share) }, logger: logger,
            query: locatorQuery)
        let sightings = locator.look(for: name)
        if isNew {
            if let existing = sightings.first(where: { $0.state != nil }) {
                throw RestoreError.nameTaken(name: name, host: existing.host)
            }
            if let unknown = sightings.first(where: { $0.error != nil }) {
                throw RestoreError.cannotCheckName(
                    name: name, host: unknown.host, detail: "\(unknown.error.map { "\($0)" } ?? "")")
            }
        }
        var live: [String] = []
        for s in sightings {
            guard let state = s.state, state == .running || state == .paused else { continue }
            guard force else { throw RestoreError.liveVM(name: name, state: state, host: s.host) }
            live.append(s.host)
        }
        return live
    }

    /// Once every disk is written beside its own: asks again (the VM may have been started meanwhile)
    /// and, with `force`, stops it wherever it runs.
    func stopLiveCopies(of name: String, isNew: Bool, force: Bool, share: SSHConnectionShare?, log: Logger) throws {
        let t0 = Date()
        let live = try liveCopies(of: name, isNew: isNew, force: force, share: share)
        for host in live {
            log.warning("--force: stopping \(name) on \(host): its new disks are written and checked")
            try Virsh(host: remoteHost(host, share: share)).destroy(name)
        }
        let what = live.isEmpty ? "\(name) runs nowhere" : "\(name) stopped"
        log.info("\(what)", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
    }

    /// The XML to define, made before anything is written (what cannot be made is refused while
    /// nothing is touched): same name with the disk paths written, or a copy under the new name
    /// without UUID, MAC addresses and the disks that were excluded from the backup (DomainXML).
    func domainXML(
        _ manifest: Manifest, backup: BackupRef, request: Request, paths: [String: String], log: Logger
    ) throws -> String {
        let excluded = Set(manifest.excluded.map(\.target))
        do {
            guard let newName = request.newName else {
                return try DomainXML.withDiskSources(manifest.domainXML, paths, keeping: excluded)
            }
            let xml = try DomainXML.renamed(
                manifest.domainXML, from: request.vm, to: newName, diskSources: paths, droppingDisks: excluded)
            if !excluded.isEmpty {
                let list = manifest.excluded.map { "\($0.target) (\($0.source))" }.joined(separator: ", ")
                log.notice("excluded disks are not part of the copy: \(list); add volumes for them if it needs them")
            }
            let shared = try DomainXML.sharedDevices(of: manifest.domainXML)
            if !shared.isEmpty {
                let list = shared.joined(separator: ", ")
                log.notice(
                    "devices of the original's own are not part of the copy: \(list) (host devices, shared directories and memory would be the original's)"
                )
            }
            return xml
        } catch {
            throw RestoreError.unusableDomainXML(vm: request.vm, id: backup.id, detail: error.description)
        }
    }

    func define(_ xml: String, name: String, host: RemoteHost, log: Logger) throws {
        let t0 = Date()
        try Virsh(host: host).define(xml: xml, what: "virsh define \(name)")
        log.info("domain defined", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
    }

    /// Writes the stored RAM state next to the VM's working files and `virsh restore`s it (paused if the
    /// VM was paused when it was backed up). The file is a copy of what the backup holds, so it is
    /// removed afterwards whatever happened.
    func resumeFromRAM(
        _ ram: Manifest.StoredImage, backup: BackupRef, manifest: Manifest, host: RemoteHost, id: String, log: Logger
    ) throws {
        let work = WorkLayout(workPath: configuration.profile(for: manifest.vm).workPath, vm: manifest.vm)
        let file = work.restoreRAMFile(backup.id)
        let q = ShellQuote.quote(file)
        try ImageWriter(host: host).write(ram, from: backup.path + "/" + ram.file, to: file, id: id)
        let paused = manifest.priorState == .paused
        try host.run(
            "rc=0; virsh restore \(q)\(paused ? " --paused" : "") >/dev/null || rc=$?; rm -f \(q); exit $rc",
            what: "virsh restore of the RAM state of backup \(backup.id) (from \(file))")
        let how = paused ? ", paused as it was" : ""
        log.info("RAM state restored: \(manifest.vm) continues from the moment of backup \(backup.id)\(how)")
    }
}
