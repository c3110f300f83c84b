import Foundation
import Logging

/// Writes a backup back onto a hypervisor: every disk to its file or block device (decompressed on the
/// hypervisor, the compressed stream's cksum and the decompressed size checked against the manifest before a file is renamed into place), then
/// defines the domain from the stored XML. Refuses to touch the disks of a VM that is running or
/// paused unless `force` (then it is stopped first). With `withRAM`, a hot (or paused) backup's RAM
/// state is written to the VM's working path and `virsh restore`d, so the guest continues from the
/// saved moment instead of booting: the disks were snapshotted right after that save, so they match.
public struct BackupRestorer: Sendable {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public struct Request: Sendable {
        public var vm: String
        public var backupID: String?
        public var toHost: String?
        public var newName: String?
        public var force: Bool
        public var start: Bool
        public var withRAM: Bool

        public init(
            vm: String, backupID: String? = nil, toHost: String? = nil, newName: String? = nil, force: Bool = false,
            start: Bool = false, withRAM: Bool = false
        ) {
            self.vm = vm
            self.backupID = backupID
            self.toHost = toHost
            self.newName = newName
            self.force = force
            self.start = start
            self.withRAM = withRAM
        }
    }

    public struct Outcome: Sendable {
        public var backupID: String
        public var host: String
        public var name: String
        public var disks: [String: String]  // target -> path written
    }

    public func restore(_ request: Request) throws -> Outcome {
        let main = configuration.main
        let catalog = BackupCatalog(storage: main.backupStorage)
        let backups = catalog.backups(of: request.vm)
        guard let backup = request.backupID.map({ id in backups.first { $0.id == id } }) ?? backups.last else {
            throw PipelineError.failed(
                request.backupID.map {
                    "no backup \($0) of \(request.vm) (have: \(backups.map(\.id).joined(separator: ", ")))"
                }
                    ?? "no backup of \(request.vm) in \(catalog.directory(of: request.vm))")
        }
        let manifest = try Manifest.read(backupDirectory: backup.path)
        let hostName = request.toHost ?? manifest.host
        guard main.hostServers.contains(hostName) else {
            throw PipelineError.failed(
                "host '\(hostName)' is not in HostServers (\(main.hostServers.joined(separator: " ")))")
        }
        if request.withRAM {
            // Checked before anything is written: a refused request must leave the host untouched.
            guard manifest.ramState != nil else {
                throw PipelineError.failed(
                    "backup \(backup.id) of \(request.vm) is a \(manifest.mode) backup of a VM that was \(manifest.priorState): it has no RAM state; restore it without --with-ram (and --start to boot it)"
                )
            }
            guard request.newName == nil else {
                throw PipelineError.failed(
                    "--with-ram cannot be combined with --as: a saved RAM state belongs to the original domain (its name, UUID and devices); restore the copy without --with-ram"
                )
            }
        }
        let name = request.newName ?? request.vm
        guard SafeName.isValidVMName(name) else {
            throw PipelineError.failed("'\(name)' is not a valid VM name; expected \(SafeName.vmExpectation)")
        }
        let host = RemoteHost(hostName, main: main)
        let virsh = Virsh(host: host)
        let log = logger.with(["vm": "\(name)", "host": "\(hostName)", "backup": "\(backup.id)"])

        // Never write under a running VM, nor create a second running copy elsewhere, unless told.
        let sightings = VMLocator(hosts: main.hostServers.map { RemoteHost($0, main: main) }, logger: logger).look(
            for: name)
        for s in sightings where s.state == .running || s.state == .paused {
            guard request.force else {
                throw PipelineError.failed(
                    "\(name) is \(s.state!.rawValue) on \(s.host); restoring would overwrite the disks of a live VM. Shut it down first, restore under another name (--as), or pass --force to stop it"
                )
            }
            log.warning("--force: stopping \(name) on \(s.host) before the restore")
            try Virsh(host: RemoteHost(s.host, main: main)).destroy(name)
        }

        var paths: [String: String] = [:]
        for image in manifest.disks {
            paths[image.target] =
                request.newName == nil ? image.source : renamedPath(image.source, from: request.vm, to: name)
        }
        for image in manifest.disks {
            let destination = paths[image.target]!
            if image.kind == .block {
                // An LV is created with the recorded size when missing; a smaller one is refused.
                try LVM(host: host).ensureVolume(path: destination, bytes: image.rawBytes)
            }
            let t0 = Date()
            try writeImage(image, from: backup.path + "/" + image.file, to: destination, host: host)
            log.info(
                "disk restored",
                metadata: [
                    "disk": "\(image.target)", "path": "\(destination)",
                    "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(t0)))",
                ])
        }
        let xml =
            request.newName == nil
            ? try DomainXML.withDiskSources(manifest.domainXML, paths)
            : try DomainXML.renamed(
                manifest.domainXML, from: request.vm, to: name, diskSources: paths,
                droppingDisks: Set(manifest.excluded.map(\.target)))
        if request.newName != nil && !manifest.excluded.isEmpty {
            log.notice(
                "excluded disks are not part of the copy: \(manifest.excluded.map { "\($0.target) (\($0.source))" }.joined(separator: ", ")); add volumes for them if it needs them"
            )
        }
        try virsh.define(xml: xml, what: "virsh define \(name)")
        log.info("domain defined")
        if request.withRAM, let ram = manifest.ramState {
            try resumeFromRAM(ram, backup: backup, manifest: manifest, host: host, log: log)
        } else if request.start {
            try virsh.start(name)
            log.info("started")
        }
        return Outcome(backupID: backup.id, host: hostName, name: name, disks: paths)
    }

    /// Writes the stored RAM state next to the VM's working files and `virsh restore`s it (paused if the
    /// VM was paused when it was backed up). The file is a copy of what the backup holds, so it is
    /// removed afterwards whatever happened.
    func resumeFromRAM(
        _ ram: Manifest.StoredImage, backup: BackupRef, manifest: Manifest, host: RemoteHost, log: Logger
    ) throws {
        let file =
            configuration.profile(for: manifest.vm).workPath + "/" + manifest.vm + "/restore-\(backup.id).ram.save"
        let q = ShellQuote.quote(file)
        try writeImage(ram, from: backup.path + "/" + ram.file, to: file, host: host)
        let paused = manifest.priorState == DomainState.paused.rawValue
        try host.run(
            "rc=0; virsh restore \(q)\(paused ? " --paused" : "") >/dev/null || rc=$?; rm -f \(q); exit $rc",
            what: "virsh restore of the RAM state of backup \(backup.id) (from \(file))")
        log.info(
            "RAM state restored: \(manifest.vm) continues from the moment of backup \(backup.id)\(paused ? ", paused as it was" : "")"
        )
    }

    /// The path a disk gets when restored under a new name: the old name in the file name (or LV name)
    /// replaced, else the new name prefixed.
    func renamedPath(_ path: String, from old: String, to new: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let renamed = base.contains(old) ? base.replacingOccurrences(of: old, with: new) : new + "-" + base
        return dir + "/" + renamed
    }

    /// Streams the stored image to the hypervisor, which decompresses it, checks the stream's cksum and the size
    /// against the manifest, and only then moves a file into place. A block device is written in
    /// place (it must exist and be large enough).
    func writeImage(_ image: Manifest.StoredImage, from stored: String, to destination: String, host: RemoteHost) throws
    {
        let fd = open(stored, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: stored) }
        defer { close(fd) }
        let decompress = image.file.hasSuffix(".zst") ? "zstd -q -dc" : "lzop -dc"
        let dst = ShellQuote.quote(destination)
        // The decompressor checks the content against the format's checksums (and fails the pipeline
        // on a mismatch); the compressed input is checked against the manifest's cksum on the way in.
        let check = """
            got=$(cat "$t/sum"); \
            if [ "$got" != "\(image.storedCksum) \(image.storedBytes)" ]; then \
            echo "the backup file arrived damaged: cksum $got, expected \(image.storedCksum) \(image.storedBytes)" >&2; exit 3; fi; \
            n=$(cat "$t/n"); if [ "$n" != \(image.rawBytes) ]; then echo "decompressed to $n bytes, expected \(image.rawBytes)" >&2; exit 3; fi
            """
        let script: String
        if image.kind == .block {
            script = """
                [ -b \(dst) ] || { echo "\(destination) is not a block device" >&2; exit 4; }; \
                size=$(blockdev --getsize64 \(dst)); [ "$size" -ge \(image.rawBytes) ] || { echo "\(destination) has $size bytes, the backup needs \(image.rawBytes)" >&2; exit 4; }; \
                t=$(mktemp -d); trap 'rm -rf "$t"' EXIT; mkfifo "$t/f" "$t/c"; \
                cksum < "$t/f" > "$t/sum" & a=$!; wc -c < "$t/c" > "$t/n" & b=$!; \
                tee "$t/f" | \(decompress) | tee "$t/c" | dd of=\(dst) bs=1M conv=fsync status=none; wait $a $b; \(check)
                """
        } else {
            script = """
                mkdir -p "$(dirname \(dst))"; tmp=\(dst).bvm-restore; \
                t=$(mktemp -d); trap 'rm -rf "$t"; rm -f "$tmp"' EXIT; mkfifo "$t/f" "$t/c"; \
                cksum < "$t/f" > "$t/sum" & a=$!; wc -c < "$t/c" > "$t/n" & b=$!; \
                tee "$t/f" | \(decompress) | tee "$t/c" > "$tmp"; wait $a $b; \(check); \
                sync "$tmp"; mv -f "$tmp" \(dst)
                """
        }
        _ = try host.stream(script, what: "restoring \(image.target) to \(destination)", stdin: fd) { _ in true }
    }
}
