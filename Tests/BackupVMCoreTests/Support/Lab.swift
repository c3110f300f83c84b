import Foundation
import Testing

@testable import BackupVMCore

extension Tag {
    /// Real hypervisors: the lab (scripts/lab) with libvirtd, sshd and TCG guests, started by
    /// scripts/test, which passes its directory in LAB_DIR.
    @Tag static var lab: Self
}

/// The lab started by scripts/test. A lab test without it fails (it is never skipped).
struct Lab: Sendable {
    let dir: String

    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "the lab tier needs a running lab: run scripts/test (it starts scripts/lab/lab up and sets LAB_DIR)"
        }
    }

    static func require() throws -> Lab {
        guard let dir = ProcessInfo.processInfo.environment["LAB_DIR"], !dir.isEmpty,
            FileManager.default.fileExists(atPath: dir + "/ssh/ssh_config")
        else { throw Missing() }
        return Lab(dir: dir)
    }

    var sshConfig: String { dir + "/ssh/ssh_config" }
    func images(_ host: String) -> String { dir + "/hosts/\(host)/images" }
    func work(_ host: String) -> String { dir + "/hosts/\(host)/work" }

    /// Runs a command on a lab host; throws with its stderr when it fails.
    @discardableResult
    func ssh(_ host: String, _ command: String, timeout: TimeInterval = 120) throws -> String {
        let r = try runTool("/usr/bin/ssh", ["-F", sshConfig, host, command], timeout: timeout)
        guard r.status == 0 else { throw LabError(description: "ssh \(host) \(command): exit \(r.status): \(r.err)") }
        return r.out
    }

    func state(_ host: String, _ vm: String) throws -> String {
        try ssh(host, "virsh domstate \(vm) 2>/dev/null || echo absent").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A guest with known disk content (scripts/lab/make-guest); returns target -> (file on the server side, sha256).
    @discardableResult
    func makeGuest(
        _ host: String, _ name: String, raw: Int? = 16, qcow2: Int? = nil, ignoreACPI: Bool = false,
        start: Bool = true, extra: [String] = []
    ) throws -> [String: (path: String, sha256: String)] {
        var args = [host, name] + extra
        if let raw { args += ["--raw", "\(raw)"] }
        if let qcow2 { args += ["--qcow2", "\(qcow2)"] }
        if ignoreACPI { args.append("--ignore-acpi") }
        if start { args.append("--start") }
        let r = try runTool(
            Paths.packageRoot + "/scripts/lab/make-guest", args, environment: ["LAB_DIR": dir], timeout: 180)
        guard r.status == 0 else { throw LabError(description: "make-guest \(args): \(r.err)") }
        var disks: [String: (String, String)] = [:]
        for line in r.out.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            if f.count == 5 { disks[f[0]] = (images(host) + "/" + (f[1] as NSString).lastPathComponent, f[4]) }
        }
        return disks
    }

    /// Removes a guest everywhere: destroyed, undefined, its files deleted.
    func removeGuest(_ name: String) {
        for host in ["kvm1", "kvm2"] {
            _ = try? ssh(
                host,
                "virsh destroy \(name) >/dev/null 2>&1; virsh undefine \(name) >/dev/null 2>&1; rm -rf /var/lib/libvirt/images/\(name)-* /var/lib/backup_vm/\(name); true"
            )
        }
    }

    func console(_ host: String, _ vm: String) -> String {
        (try? String(contentsOfFile: images(host) + "/\(vm)-console.log", encoding: .utf8)) ?? ""
    }

    func readyCount(_ host: String, _ vm: String) -> Int {
        console(host, vm).components(separatedBy: "LAB-GUEST-READY").count - 1
    }

    /// A configuration directory for backup_vm pointing at the lab.
    func config(
        _ dir: TempDir, hosts: String = "kvm1 kvm2", schedule: String, extraMain: String = "",
        profiles: [String: String] = [:], sshConfig: String? = nil
    ) -> String {
        dir.write(
            "backup_vm.d/backup_vm.conf",
            """
            HostServers="\(hosts)"
            BackupStorage=\(dir.path)/storage
            MaxBackupThreads=3
            MaxBackupThreadsForHost=2
            SshConfig=\(sshConfig ?? self.sshConfig)
            SshConnectTimeout=5
            ShutdownTimeout=60
            SyslogSocket=\(dir.path)/syslog.sock
            SpoolRescanSeconds=2
            \(extraMain)
            """)
        dir.write("backup_vm.d/sheduler.conf", schedule + "\n")
        dir.write("vmsnapshot.d/default", "Mode=cold\nWorkPath=/var/lib/backup_vm\n")
        for (vm, text) in profiles { dir.write("vmsnapshot.d/\(vm)", text + "\n") }
        return dir.path
    }
}

struct LabError: Error, CustomStringConvertible { let description: String }

/// `backup_vm` against a config directory.
@discardableResult
func backupVM(_ config: String, _ args: [String], timeout: TimeInterval = 600) throws -> (
    status: Int32, out: String, err: String
) {
    try runTool(Paths.binary("backup_vm"), args + ["--config-dir", config], timeout: timeout)
}

func sha256(ofFile path: String) throws -> String {
    let r = try runTool("/usr/bin/sha256sum", [path])
    return String(r.out.prefix(64))
}
