import Foundation
import Logging

@testable import BackupVMCore

/// A backup server and one hypervisor `kvm1` for restores, on this machine: the real BackupRestorer
/// over a stand-in ssh (SandboxHost) whose scripts run for real (bash, dd, lzop, cksum) against a
/// FakeLVM and a virsh stand-in that keeps each domain's state in a file. The backup is made here:
/// real lzop images with their manifest, as a backup would have stored them.
final class RestoreSandbox: @unchecked Sendable {
    let dir = TempDir("restore")
    let lvm: FakeLVM
    let sandbox: SandboxHost
    let configuration: Configuration
    let messages = CapturedMessages()
    let vm = "web01"
    let backupID = "20261127T220000Z"

    init(stubs: [String: String] = [:]) throws {
        lvm = try FakeLVM(dir)
        let domains = dir.path + "/domains"
        try FileManager.default.createDirectory(atPath: domains, withIntermediateDirectories: true)
        sandbox = try SandboxHost(
            dir,
            stubs: lvm.stubs.merging(["virsh": Self.virsh(domains)], uniquingKeysWith: { $1 })
                .merging(stubs, uniquingKeysWith: { $1 }))
        dir.write(
            "backup_vm.d/backup_vm.conf",
            "HostServers=kvm1\nBackupStorage=\(dir.path)/storage\nSyslogSocket=\(dir.path)/no-syslog\n")
        dir.write("backup_vm.d/sheduler.conf", "\(vm) * 3\n")
        dir.write("vmsnapshot.d/default", "Mode=cold\nWorkPath=\(sandbox.sandbox)/work\n")
        configuration = try Configuration.load(directory: dir.path)
    }

    var restorer: BackupRestorer { restorer() }

    /// The restorer, asking `locatorQuery` whether a domain is defined (default: virsh over the stand-in ssh).
    func restorer(locatorQuery: @escaping VMLocator.Query = VMLocator.virshQuery) -> BackupRestorer {
        let messages = self.messages
        return BackupRestorer(
            configuration: configuration,
            logger: Logger(label: "restore-test") { _ in CapturingLogHandler(messages: messages) },
            locatorQuery: locatorQuery, sshProgram: dir.path + "/ssh")
    }

    var backupDirectory: String { dir.path + "/storage/\(vm)/\(backupID)" }

    /// The domain's state on kvm1 (nil: not defined); setting it defines the domain.
    func state(of name: String) -> String? {
        (try? String(contentsOfFile: dir.path + "/domains/" + name, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
    func setState(_ state: String, of name: String) { dir.write("domains/" + name, state + "\n") }
    /// The XML the last `virsh define` of `name` got.
    func definedXML(_ name: String) -> String? {
        try? String(contentsOfFile: dir.path + "/domains/defined-" + name + ".xml", encoding: .utf8)
    }

    /// Stores a backup of `vm` with these disks and contents (LVs record their volume as a backup does;
    /// `formatVersion` 1 leaves it out, as older backups did).
    /// `domainXML`: the stored definition (default: ScriptedHypervisor's for these disks).
    func storeBackup(
        _ disks: [(disk: DomainDisk, volume: VolumeName?, content: Data)], formatVersion: Int = 2,
        domainXML: String? = nil
    ) throws {
        try FileManager.default.createDirectory(atPath: backupDirectory, withIntermediateDirectories: true)
        var images: [Manifest.StoredImage] = []
        for (disk, volume, content) in disks {
            let file = BackupNames.image(target: disk.target, format: disk.format, compression: .lzop)
            let raw = dir.path + "/raw-" + disk.target
            try content.write(to: URL(fileURLWithPath: raw))
            let lzop = try runTool("/usr/bin/lzop", ["-1", "-f", "-o", backupDirectory + "/" + file, raw])
            guard lzop.status == 0 else { throw HarnessError(description: "lzop: \(lzop.err)") }
            let cksum = try runTool("/usr/bin/cksum", [backupDirectory + "/" + file]).out.split(separator: " ")
            images.append(
                Manifest.StoredImage(
                    target: disk.target, source: disk.source, kind: disk.kind, format: disk.format, file: file,
                    rawBytes: Int64(content.count), storedBytes: Int64(cksum[1]) ?? 0,
                    storedCksum: UInt32(cksum[0]) ?? 0, storedSHA256: try sha256(ofFile: backupDirectory + "/" + file),
                    volume: formatVersion >= 2 ? volume?.fullName : nil))
        }
        var manifest = Manifest(
            vm: vm, id: backupID, host: "kvm1", mode: .cold, requestedMode: .cold, modeNote: nil,
            priorState: .shutOff, compression: .lzop, started: "2026-11-27T22:00:00Z", finished: "2026-11-27T22:00:09Z",
            durationSeconds: 9, downtimeSeconds: 9, disks: images, excluded: [], ramState: nil,
            domainXML: domainXML ?? ScriptedHypervisor.domainXML(vm, disks.map(\.disk)), keptOnHost: false,
            sequence: 1)
        manifest.formatVersion = formatVersion
        try manifest.encoded().write(to: URL(fileURLWithPath: backupDirectory + "/" + BackupNames.manifest))
    }

    /// The commands the hypervisor ran, in order: "virsh destroy web01", "lvcreate ...", one per call.
    var commands: [String] {
        let text = (try? String(contentsOfFile: sandbox.log, encoding: .utf8)) ?? ""
        var out: [String] = []
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("== ") {
                out.append(String(line.dropFirst(3)))
            } else if !line.isEmpty, !out.isEmpty {
                out[out.count - 1] += " " + line
            }
        }
        return out
    }
    /// Commands that change something on the hypervisor (what a refusal must never have run).
    var changes: [String] {
        commands.filter { c in
            ["lvcreate", "lvrename", "lvremove", "virsh destroy", "virsh define", "virsh start"].contains {
                c.hasPrefix($0)
            }
        }
    }

    /// A virsh for the sandbox: `domstate` and `dominfo` from `domains/NAME`, `destroy` and `start`
    /// change it, `define` keeps the XML (and defines the domain, shut off), `dumpxml` shows it,
    /// `undefine` forgets both. `domains/.down` makes every command fail as with libvirtd gone,
    /// `domains/.destroy-fails` makes `destroy` fail and leave the domain running.
    static func virsh(_ domains: String) -> String {
        """
        D='\(domains)'; a=("$@"); [ "${a[0]}" != -q ] || a=("${a[@]:1}")
        [ ! -e "$D/.down" ] || { echo 'error: failed to connect to the hypervisor' >&2; exit 1; }
        case "${a[0]}" in
        domstate|dominfo) [ -e "$D/${a[1]}" ] || { echo "error: failed to get domain '${a[1]}'" >&2; exit 1; }
            [ "${a[0]}" = dominfo ] || cat "$D/${a[1]}" ;;
        dumpxml) cat "$D/defined-${a[1]}.xml" ;;
        destroy) [ ! -e "$D/.destroy-fails" ] || { echo 'error: Failed to terminate process' >&2; exit 1; }
            echo 'shut off' > "$D/${a[1]}" ;;
        undefine) rm -f "$D/${a[1]}" "$D/defined-${a[1]}.xml" ;;
        start) echo running > "$D/${a[1]}" ;;
        define) n=$(sed -n 's:.*<name>\\(.*\\)</name>.*:\\1:p' "${a[1]}" | head -n 1); cp "${a[1]}" "$D/defined-$n.xml"
            [ -e "$D/$n" ] || echo 'shut off' > "$D/$n" ;;
        esac
        """
    }
}
