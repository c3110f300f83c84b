import Foundation

/// Preflight of everything a backup needs: every hypervisor (ssh with a verified key, virsh and
/// libvirtd, the tools the pipeline runs, room in the working path) and this server (storage, spool,
/// syslog). Each finding says what to do about it.
public struct Doctor: Sendable {
    public struct Finding: Sendable, CustomStringConvertible {
        public var subject: String
        public var ok: Bool
        public var detail: String
        public var description: String { "\(ok ? "ok  " : "FAIL") \(subject): \(detail)" }
    }

    public let configuration: Configuration

    public init(configuration: Configuration) { self.configuration = configuration }

    static let tools = ["virsh", "dd", "lzop", "cksum", "mkfifo", "tee", "stat", "blockdev"]

    public func run() -> [Finding] {
        let main = configuration.main
        var findings = localChecks()
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var items: [Int: [Finding]] = [:]
        }
        let box = Box()
        let hosts = main.hostServers
        let workPaths = Set([configuration.defaultProfile.workPath] + configuration.profiles.values.map(\.workPath))
        DispatchQueue.concurrentPerform(iterations: hosts.count) { i in
            let result = check(host: RemoteHost(hosts[i], main: main), workPaths: workPaths.sorted())
            box.lock.withLock { box.items[i] = result }
        }
        for i in 0..<hosts.count { findings += box.items[i] ?? [] }
        return findings
    }

    func localChecks() -> [Finding] {
        let main = configuration.main
        var f: [Finding] = []
        do {
            try Files.makeDirectory(main.backupStorage, mode: 0o700)
            var st = statvfs()
            statvfs(main.backupStorage, &st)
            let free = Double(st.f_bavail) * Double(st.f_frsize) / 1_073_741_824
            f.append(
                Finding(
                    subject: "storage \(main.backupStorage)", ok: access(main.backupStorage, W_OK) == 0,
                    detail: String(format: "%.1f GiB free", free)))
        } catch {
            f.append(
                Finding(subject: "storage \(main.backupStorage)", ok: false, detail: "\(error); create it (mode 0700)"))
        }
        do {
            try SpoolLayout(root: main.spoolDir).prepare()
            f.append(Finding(subject: "spool \(main.spoolDir)", ok: true, detail: "folders present, mode 0700"))
        } catch {
            f.append(Finding(subject: "spool \(main.spoolDir)", ok: false, detail: "\(error)"))
        }
        let syslog = SyslogWriter(socketPath: main.syslogSocket, facility: main.syslogFacility, reportFailure: false)
        f.append(
            Finding(
                subject: "syslog \(main.syslogSocket)", ok: syslog.isConnected,
                detail: syslog.isConnected
                    ? "accepting messages" : "no syslog daemon listening: logs go to stderr only (install rsyslog?)"))
        for tool in ["ssh", "lzop"] + (main.compression == .zstd ? ["zstd"] : []) {
            let found = (try? ProcessRunner.run(["sh", "-c", "command -v \(tool)"]).status) == 0
            f.append(
                Finding(
                    subject: "this server: \(tool)", ok: found,
                    detail: found ? "found" : "missing: apt-get install \(tool == "ssh" ? "openssh-client" : tool)"))
        }
        return f
    }

    func check(host: RemoteHost, workPaths: [String]) -> [Finding] {
        let subject = "host \(host.name)"
        let tools = Doctor.tools + (configuration.main.compression == .zstd ? ["zstd"] : [])
        let script = """
            for t in \(tools.joined(separator: " ")); do command -v "$t" >/dev/null || echo "missing $t"; done; \
            virsh -q version --daemon 2>&1 | tail -n 1 | sed 's/^/libvirt /'; \
            for w in \(workPaths.map(ShellQuote.quote).joined(separator: " ")); do \
            mkdir -p "$w" && echo "work $w $(df -P "$w" | awk 'NR==2 {print $4}')" || echo "nowork $w"; done; \
            command -v lvs >/dev/null && echo "lvm $(lvs --noheadings 2>/dev/null | wc -l)" || echo "lvm none"
            """
        let out: String
        do {
            out = try host.run(script, what: "preflight")
        } catch {
            var hint = "check the address in your ssh_config and that sshd runs"
            let text = "\(error)"
            if text.contains("Host key verification failed") || text.contains("No ED25519 host key")
                || text.contains("host key")
            {
                hint =
                    "add its key: ssh-keyscan -H \(host.name) >> the UserKnownHostsFile of your ssh_config (then compare the fingerprint with the host's /etc/ssh/ssh_host_*_key.pub)"
            } else if text.contains("Permission denied") {
                hint = "install this server's public key in root's authorized_keys on \(host.name)"
            }
            return [Finding(subject: subject, ok: false, detail: "\(text); \(hint)")]
        }
        var findings: [Finding] = [Finding(subject: subject, ok: true, detail: "ssh as root with a verified host key")]
        for line in out.split(separator: "\n").map(String.init) {
            let f = line.split(separator: " ", maxSplits: 2).map(String.init)
            switch f.first {
            case "missing":
                findings.append(
                    Finding(
                        subject: subject, ok: false,
                        detail:
                            "\(f[1]) not found; install it (apt-get install \(f[1] == "virsh" ? "libvirt-clients" : f[1] == "blockdev" ? "util-linux" : f[1]))"
                    ))
            case "libvirt":
                let ok = !line.contains("error")
                findings.append(
                    Finding(subject: subject, ok: ok, detail: ok ? line : "libvirtd does not answer: \(line)"))
            case "work":
                let kib = Double(f.count > 2 ? f[2] : "0") ?? 0
                findings.append(
                    Finding(
                        subject: subject, ok: true,
                        detail: String(format: "working path %@: %.1f GiB free", f[1], kib / 1_048_576)))
            case "nowork":
                findings.append(Finding(subject: subject, ok: false, detail: "cannot create working path \(f[1])"))
            case "lvm":
                findings.append(
                    Finding(
                        subject: subject, ok: true,
                        detail: f[1] == "none" ? "no LVM tools (fine for file disks)" : "LVM: \(f[1]) LVs"))
            default:
                continue
            }
        }
        return findings
    }
}
