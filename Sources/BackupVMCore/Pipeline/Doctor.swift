import Foundation

/// Preflight of everything a backup needs: every hypervisor (ssh with a verified key, virsh and
/// libvirtd, the tools the pipeline runs, room in the working path) and this server (storage, spool,
/// syslog). Each finding says what to do about it.
public struct Doctor: Sendable {
    public struct Finding: Sendable, CustomStringConvertible {
        public var subject: String
        public var ok: Bool
        public var detail: String
        /// Worth the operator's attention, but nothing a backup needs (exit status 0).
        public var warning = false
        public var description: String { "\(!ok ? "FAIL" : warning ? "WARN" : "ok  ") \(subject): \(detail)" }
    }

    /// One hypervisor's findings, and the domains it has defined (nil: it did not answer).
    struct HostReport {
        var findings: [Finding]
        var domains: [String]?
    }

    /// Runs the preflight script on one host and returns its stdout.
    public typealias Preflight = @Sendable (RemoteHost, String) throws(RemoteError) -> String

    /// The real preflight: one ssh round trip.
    public static let sshPreflight: Preflight = { host, script throws(RemoteError) in
        try host.run(script, what: "preflight")
    }

    public let configuration: Configuration
    let preflight: Preflight

    public init(configuration: Configuration) {
        self.init(configuration: configuration, preflight: Doctor.sshPreflight)
    }

    /// With another way to run the per-host script (tests).
    public init(configuration: Configuration, preflight: @escaping Preflight) {
        self.configuration = configuration
        self.preflight = preflight
    }

    static let tools = ["virsh", "dd", "lzop", "cksum", "mkfifo", "tee", "stat", "blockdev"]

    public func run() -> [Finding] { examine().findings }

    /// Every check, and which VMs nobody backs up (Coverage) as the hypervisors told it.
    public func examine(now: Date = Date()) -> (findings: [Finding], coverage: Coverage) {
        let main = configuration.main
        let reports = hostReports()
        var listed: [String: [String]] = [:]
        var unreachable: [String] = []
        for (host, report) in zip(main.hostServers, reports) {
            if let domains = report.domains { listed[host] = domains } else { unreachable.append(host) }
        }
        let coverage = Coverage.compute(
            scheduled: configuration.schedule.entries.map(\.vm), listed: listed, unreachable: unreachable, now: now)
        return (localChecks() + reports.flatMap(\.findings) + coverageFindings(coverage), coverage)
    }

    func hostChecks() -> [Finding] { hostReports().flatMap(\.findings) }

    /// Every hypervisor, all at once (one thread per host, so unreachable hosts cost one connect
    /// timeout in all); the reports in the order of HostServers.
    func hostReports() -> [HostReport] {
        let main = configuration.main
        let workPaths = Set([configuration.defaultProfile.workPath] + configuration.profiles.values.map(\.workPath))
        let hosts = main.hostServers.map { RemoteHost($0, main: main) }
        return OneThreadEach.map(hosts) { host in check(host: host, workPaths: workPaths.sorted()) }
    }

    /// VMs nobody backs up (a warning each: some may be left out on purpose) and scheduled VMs that
    /// exist nowhere (a failure when every hypervisor answered: their jobs fail every night).
    func coverageFindings(_ c: Coverage) -> [Finding] {
        var findings: [Finding] = []
        for vm in c.unscheduled {
            findings.append(
                Finding(
                    subject: "coverage", ok: true,
                    detail:
                        "\(vm) (on \(c.hosts(of: vm).joined(separator: ", "))) has no line in sheduler.conf: nobody backs it up",
                    warning: true))
        }
        let answered =
            c.unreachable.isEmpty ? "" : " that answered (not asked: \(c.unreachable.joined(separator: ", ")))"
        for vm in c.missing {
            findings.append(
                Finding(
                    subject: "coverage", ok: !c.unreachable.isEmpty,
                    detail: "sheduler.conf schedules \(vm), which is defined on no hypervisor\(answered)",
                    warning: true))
        }
        for name in c.unsafeNames {
            findings.append(
                Finding(
                    subject: "coverage", ok: true,
                    detail: "a domain named \(name) cannot be backed up (not a valid VM name)", warning: true))
        }
        if findings.isEmpty {
            findings.append(
                Finding(
                    subject: "coverage", ok: true,
                    detail: "every domain on the hypervisors has a line in sheduler.conf, and every line's VM exists"))
        }
        return findings
    }

    func localChecks() -> [Finding] {
        storageCheck() + [spoolCheck(), syslogCheck()] + toolChecks() + chunkHelperCheck()
    }

    /// Store=chunks: the helper this server copies to the hypervisors must be here.
    func chunkHelperCheck() -> [Finding] {
        guard configuration.main.store == .chunks else { return [] }
        do {
            let helper = try ChunkHelper.load(path: configuration.main.chunkHelper)
            return [
                Finding(
                    subject: "this server: chunk helper", ok: true,
                    detail:
                        "\(helper.localPath) (sha256 \(helper.sha256.prefix(16))…), copied to each hypervisor on first use"
                )
            ]
        } catch {
            return [Finding(subject: "this server: chunk helper", ok: false, detail: "\(error)")]
        }
    }

    func storageCheck() -> [Finding] {
        let storage = configuration.main.backupStorage
        do {
            try Files.makeDirectory(storage, mode: 0o700)
            var st = statvfs()
            statvfs(storage, &st)
            let free = Double(st.f_bavail) * Double(st.f_frsize) / 1_073_741_824
            return [
                Finding(
                    subject: "storage \(storage)", ok: access(storage, W_OK) == 0,
                    detail: String(format: "%.1f GiB free", free))
            ]
        } catch {
            return [Finding(subject: "storage \(storage)", ok: false, detail: "\(error); create it (mode 0700)")]
        }
    }

    func spoolCheck() -> Finding {
        let spoolDir = configuration.main.spoolDir
        do {
            try SpoolLayout(root: spoolDir).prepare()
            return Finding(subject: "spool \(spoolDir)", ok: true, detail: "folders present, mode 0700")
        } catch {
            return Finding(subject: "spool \(spoolDir)", ok: false, detail: "\(error)")
        }
    }

    func syslogCheck() -> Finding {
        let main = configuration.main
        let syslog = SyslogWriter(socketPath: main.syslogSocket, facility: main.syslogFacility, reportFailure: false)
        return Finding(
            subject: "syslog \(main.syslogSocket)", ok: syslog.isConnected,
            detail: syslog.isConnected
                ? "accepting messages" : "no syslog daemon listening: logs go to stderr only (install rsyslog?)")
    }

    func toolChecks() -> [Finding] {
        let tools = ["ssh", "lzop"] + (configuration.main.compression == .zstd ? ["zstd"] : [])
        return tools.map { tool in
            let found = (try? ProcessRunner.run(["sh", "-c", "command -v \(tool)"]).status) == 0
            return Finding(
                subject: "this server: \(tool)", ok: found,
                detail: found ? "found" : "missing: apt-get install \(tool == "ssh" ? "openssh-client" : tool)")
        }
    }

    /// One script, one round trip: missing tools, libvirtd, each working path's free space, LVM.
    func preflightScript(workPaths: [String]) -> String {
        let tools =
            Doctor.tools + (configuration.main.compression == .zstd ? ["zstd"] : [])
            + (configuration.main.store == .chunks ? ["sha256sum", "mktemp"] : [])
        return """
            for t in \(tools.joined(separator: " ")); do command -v "$t" >/dev/null || echo "missing $t"; done; \
            virsh -q version --daemon 2>&1 | tail -n 1 | sed 's/^/libvirt /'; \
            \(WorkPathGuard.function); for w in \(workPaths.map(ShellQuote.quote).joined(separator: " ")); do \
            if ! r=$(bvm_workpath_check "$w"); then echo "unsafework $w $r"; continue; fi; \
            (umask 077; mkdir -p "$w") && echo "work $w $(df -P "$w" | awk 'NR==2 {print $4}')" || echo "nowork $w"; done; \
            command -v lvs >/dev/null && echo "lvm $(lvs --noheadings 2>/dev/null | wc -l)" || echo "lvm none"; \
            if d=$(virsh -q list --all --name 2>/dev/null); then \
            printf '%s\\n' "$d" | while IFS= read -r n; do if [ -n "$n" ]; then echo "domain $n"; fi; done; echo "domains listed"; fi; \
            \(LiveSupport.probeScript)
            """
    }

    func check(host: RemoteHost, workPaths: [String]) -> HostReport {
        let subject = "host \(host.name)"
        let out: String
        do throws(RemoteError) {
            out = try preflight(host, preflightScript(workPaths: workPaths))
        } catch {
            return HostReport(
                findings: [
                    Finding(
                        subject: subject, ok: false, detail: "\(error); \(Doctor.hint(for: error, host: host.name))")
                ], domains: nil)
        }
        let lines = out.split(separator: "\n").map(String.init)
        let findings = lines.compactMap { finding(forLine: $0, subject: subject) }
        // `virsh list --name` printed "domain NAME" lines; a host whose libvirtd did not answer has
        // none, and is then not a host that answered.
        let domains = lines.filter { $0.hasPrefix("domain ") }.map { String($0.dropFirst("domain ".count)) }
        let listed = lines.contains("domains listed")
        return HostReport(
            findings: [Finding(subject: subject, ok: true, detail: "ssh as root with a verified host key")] + findings
                + [liveFinding(LiveSupport(probeOutput: out), subject: subject)],
            domains: listed ? domains : nil)
    }

    /// Live backups on this host: a failure only when a profile asks for Mode=live without a fallback.
    func liveFinding(_ support: LiveSupport, subject: String) -> Finding {
        let versions = "libvirt \(support.libvirt ?? "?"), QEMU \(support.qemu ?? "?")"
        if support.isAvailable {
            return Finding(subject: subject, ok: true, detail: "live backups possible (\(versions), nbdcopy)")
        }
        let profiles = [configuration.defaultProfile] + Array(configuration.profiles.values)
        let needed = profiles.contains { $0.mode == .live && $0.liveFallback == nil }
        return Finding(
            subject: subject, ok: !needed,
            detail: "live backups not possible: missing \(support.missing.joined(separator: "; "))"
                + (needed ? " (a profile sets Mode=live without LiveFallback)" : " (no profile needs them)"))
    }

    /// What to do when the preflight could not run on a host.
    static func hint(for error: RemoteError, host: String) -> String {
        let addKey =
            "add its key: ssh-keyscan -H \(host) >> the UserKnownHostsFile of your ssh_config "
            + "(then compare the fingerprint with the host's /etc/ssh/ssh_host_*_key.pub)"
        switch error.connectionFailure {
        case .hostKeyUnknown:
            return addKey
        case .hostKeyChanged:
            return "its host key CHANGED: if the host was reinstalled, remove the old key (ssh-keygen -R \(host) "
                + "-f the UserKnownHostsFile of your ssh_config) and \(addKey); otherwise find out who answers there"
        case .authenticationRefused:
            return "install this server's public key in root's authorized_keys on \(host)"
        case .unreachable, .other, nil:
            return "check the address in your ssh_config and that sshd runs"
        }
    }

    /// One line of the preflight script's output as a finding (nil: a line it does not know).
    func finding(forLine line: String, subject: String) -> Finding? {
        let f = line.split(separator: " ", maxSplits: 2).map(String.init)
        switch f.first {
        case "missing" where f.count > 1:
            return Finding(
                subject: subject, ok: false, detail: "\(f[1]) not found; install it (apt-get install \(package(f[1])))")
        case "libvirt":
            let ok = !line.contains("error")
            return Finding(subject: subject, ok: ok, detail: ok ? line : "libvirtd does not answer: \(line)")
        case "work" where f.count > 1:
            let kib = Double(f.count > 2 ? f[2] : "0") ?? 0
            return Finding(
                subject: subject, ok: true,
                detail: String(format: "working path %@: %.1f GiB free", f[1], kib / 1_048_576))
        case "unsafework" where f.count > 1:
            return Finding(
                subject: subject, ok: false,
                detail: "working path \(f[1]) is not safe: \(f.count > 2 ? f[2] : "?"); others could replace what root"
                    + " runs and writes there: make it and every directory above it root's and not writable by group"
                    + " or others (chown root; chmod go-w)")
        case "nowork" where f.count > 1:
            return Finding(subject: subject, ok: false, detail: "cannot create working path \(f[1])")
        case "lvm" where f.count > 1:
            return Finding(
                subject: subject, ok: true,
                detail: f[1] == "none" ? "no LVM tools (fine for file disks)" : "LVM: \(f[1]) LVs")
        default:
            return nil
        }
    }

    /// The Debian package that provides a tool.
    func package(_ tool: String) -> String {
        switch tool {
        case "virsh": return "libvirt-clients"
        case "blockdev": return "util-linux"
        default: return tool
        }
    }
}
