import Foundation

/// libvirt's backup API on one hypervisor, through virsh over ssh: a pull-mode backup job (an NBD
/// export of each disk as it was when the job began, on a unix socket in our directory) and the
/// guest agent's freeze and thaw around its start. Checked facts behind every step are in
/// docs/live-backup-spike.md; the names reaching here are validated and quoted in every command.
public struct VirshBackupJob: Sendable {
    public let host: RemoteHost
    /// Where libvirt keeps each running domain's qemu pid (`NAME.pid`); the tests' stand-in host has
    /// its own.
    let qemuRunDirectory: String

    public init(host: RemoteHost) { self.init(host: host, qemuRunDirectory: "/run/libvirt/qemu") }

    init(host: RemoteHost, qemuRunDirectory: String) {
        self.host = host
        self.qemuRunDirectory = qemuRunDirectory
    }

    /// What this host offers for live backups.
    public func support() throws(RemoteError) -> LiveSupport {
        LiveSupport(probeOutput: try host.run(LiveSupport.probeScript + "; true", what: "checking for the backup API"))
    }

    /// The job's XML: every disk listed (an unlisted disk would be left out silently, and without a
    /// `<disks>` list libvirt puts the scratch files beside the disk images), each with its scratch file
    /// in our directory; `type="file"` is the scratch's type, right for file disks and LVs alike.
    static func backupXML(directory: String, targets: [String], excluded: [String]) -> String {
        let disks =
            targets.map {
                "<disk name=\"\(xml($0))\" backup=\"yes\" type=\"file\">"
                    + "<scratch file=\"\(xml(LiveJob.scratch(in: directory, target: $0)))\"/></disk>"
            } + excluded.map { "<disk name=\"\(xml($0))\" backup=\"no\"/>" }
        return "<domainbackup mode=\"pull\"><server transport=\"unix\" socket=\""
            + xml(LiveJob.socket(in: directory)) + "\"/><disks>" + disks.joined() + "</disks></domainbackup>"
    }

    static func xml(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&apos;")
    }

    /// The begin script. A job already running is reported (`BVM_JOB_RUNNING SOCKET`) instead of
    /// begun over: a second backup-begin waits 30 s on libvirt's state lock before it fails. The
    /// directory belongs to the qemu process's user (qemu creates the socket and opens the scratch
    /// files itself) and is closed to everyone else; the VM's working directory and WorkPath above it
    /// are made searchable (not readable: `a+x`) for that user (WorkPath made by this tool under
    /// umask 077 is 0700), and every directory above those must be already (`x`, or `t`: sticky
    /// and searchable, like /tmp).
    ///
    /// With `quiesce`, the freeze, the begin and the thaw are one script, so the guest's file systems
    /// are frozen only for the begin itself (copy-before-write fixes the view from then on) and the
    /// thaw does not wait for a round trip; an EXIT trap thaws on every way out (also when `timeout`
    /// ends the script: TERM exits through it). The sysrq emergency sync is sent first; without an
    /// agent answering, the begin comes a second after it. What happened is told on stdout (`BVM_FROZE`, `BVM_THAWED MS`,
    /// `BVM_NOFREEZE WHY`, `BVM_NOSYNC`); a thaw that failed on stderr (`BVM_THAW_FAILED`).
    static func beginScript(vm: String, directory: String, xml: String, quiesce: Bool, runDirectory: String) -> String {
        let freeze =
            quiesce
            ? """
            f=0; thaw() { [ "$f" = 1 ] || return 0; f=0; \
            if virsh domfsthaw "$vm" >/dev/null 2>&1 || { sleep 1; virsh domfsthaw "$vm" >/dev/null 2>&1; }; \
            then echo "BVM_THAWED $((($(date +%s%N) - t0) / 1000000))"; else echo BVM_THAW_FAILED >&2; fi; }; \
            trap thaw EXIT; trap 'exit 143' TERM; t0=$(date +%s%N); \
            if out=$(virsh domfsfreeze "$vm" 2>&1); then f=1; echo "BVM_FROZE $(printf '%s' "$out" | tr '\n' ' ')"; \
            else echo "BVM_NOFREEZE $(printf '%s' "$out" | tr '\n' ' ')"; \
            if [ "$y" = 1 ]; then w=$((1000 - ($(date +%s%N) - s0) / 1000000)); \
            [ "$w" -le 0 ] || sleep "$((w / 1000)).$(printf '%03d' $((w % 1000)))"; else echo BVM_NOSYNC; fi; fi; \

            """ : ""
        // The sysrq emergency sync goes first, so that the guest's second to write its buffers runs
        // while the directory is made and the agent is asked; without an agent the begin waits only
        // for what is left of that second. With an agent it is one more sync before the freeze.
        let sync =
            quiesce
            ? "s0=$(date +%s%N); if virsh send-key \"$vm\" KEY_LEFTALT KEY_SYSRQ KEY_S >/dev/null 2>&1; then y=1; else y=0; fi; "
            : ""
        return """
            vm=\(ShellQuote.quote(vm)); d=\(ShellQuote.quote(directory)); \
            if j=$(virsh backup-dumpxml "$vm" 2>/dev/null); then \
            echo "BVM_JOB_RUNNING $(printf '%s\\n' "$j" | sed -n "s/.*socket='\\([^']*\\)'.*/\\1/p" | head -n 1)"; exit 0; fi; \
            \(sync)r=\(ShellQuote.quote(runDirectory)); \
            p=$(cat "$r/$vm.pid" 2>/dev/null) || { echo "no qemu process of $vm ($r/$vm.pid)" >&2; exit 3; }; \
            u=$(stat -c %u "/proc/$p"); \
            rm -rf "$d"; mkdir -p "$d"; chown "$u" "$d"; chmod 700 "$d"; v=${d%/*}; chmod a+x "$v" "${v%/*}"; a=${v%/*}; \
            while a=${a%/*}; [ -n "$a" ]; do case $(stat -c %A "$a") in *[xt]) ;; *) rm -rf "$d"; \
            echo "$a is not searchable by the qemu user (uid $u), which must reach the job's socket and scratch files: chmod o+x $a" >&2; \
            exit 3;; esac; done; \
            \(freeze)if ! printf '%s' \(ShellQuote.quote(xml)) | virsh backup-begin "$vm" /dev/stdin >/dev/null; then \
            rm -rf "$d"; exit 3; fi; \
            \(quiesce ? "thaw; " : "")virsh backup-dumpxml "$vm"
            """
    }

    /// Begins the job (around a quiesce, when asked); `.running(socket)` when one already runs on
    /// the domain (nothing begun, nothing frozen). A thaw that failed is `thawFailed` (the caller
    /// thaws again), or, when the begin failed too, LiveBackupError.thawFailed.
    public func begin(vm: String, directory: String, targets: [String], excluded: [String], quiesce: Bool) throws
        -> LiveBegin
    {
        let socket = LiveJob.socket(in: directory)
        guard socket.utf8.count <= LiveJob.maximumSocketPath else {
            throw LiveBackupError.socketPathTooLong(path: socket)
        }
        // libvirt prints the socket path XML-escaped in backup-dumpxml, where `end` must find it again.
        guard LiveJob.isPlainPath(directory) else { throw LiveBackupError.unplainDirectory(path: directory) }
        let script = Self.beginScript(
            vm: vm, directory: directory,
            xml: Self.backupXML(directory: directory, targets: targets, excluded: excluded),
            quiesce: quiesce, runDirectory: qemuRunDirectory)
        let what = "starting the backup job of \(vm) (virsh backup-begin)"
        let r = try host.probe(script, what: what)
        let thawFailed = r.stderr.contains("BVM_THAW_FAILED")
        let stderr = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("BVM_") }.joined(separator: "\n")
        guard r.status == 0 else {
            let error = RemoteError.command(host: host.name, what: what, status: r.status, stderr: stderr)
            if thawFailed { throw LiveBackupError.thawFailed(vm: vm, host: host.name, cause: "\(error)") }
            throw error
        }
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func marker(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name) }.map {
                String($0.dropFirst(name.count)).trimmingCharacters(in: .whitespaces)
            }
        }
        var quiesced: QuiesceResult?
        if let froze = marker("BVM_FROZE") {
            // "Froze 2 filesystem(s)"
            let count = froze.split(separator: " ").compactMap { Int($0) }.first ?? 0
            quiesced = .frozen(count: count, milliseconds: marker("BVM_THAWED").flatMap { Int($0) })
        } else if let why = marker("BVM_NOFREEZE") {
            quiesced = .unavailable(RemoteError.trim(why), synced: marker("BVM_NOSYNC") == nil)
        }
        if let socket = marker("BVM_JOB_RUNNING") {
            return LiveBegin(outcome: .running(socket: socket), quiesce: nil, thawFailed: false)
        }
        let exports = Self.exports(inDumpXML: r.stdout)
        var named: [String: String] = [:]
        for target in targets {
            guard let export = exports[target], SafeName.isValidExportName(export) else {
                throw LiveBackupError.noExport(vm: vm, target: target)
            }
            named[target] = export
        }
        return LiveBegin(
            outcome: .begun(LiveJob(directory: directory, exports: named)), quiesce: quiesced, thawFailed: thawFailed)
    }

    public enum BeginOutcome: Sendable, Equatable {
        case begun(LiveJob)
        case running(socket: String)
    }

    /// `<disk name='vda' backup='yes' ... exportname='vda' ...>` → vda: vda, from backup-dumpxml.
    static func exports(inDumpXML xml: String) -> [String: String] {
        var exports: [String: String] = [:]
        for tag in xml.components(separatedBy: "<disk ").dropFirst() {
            let head = " " + tag.prefix { $0 != ">" }
            if let name = attribute("name", in: head), let export = attribute("exportname", in: head) {
                exports[name] = export
            }
        }
        return exports
    }

    static func attribute(_ name: String, in tag: String) -> String? {
        for quote in ["'", "\""] {
            guard let start = tag.range(of: " \(name)=\(quote)") else { continue }
            let rest = tag[start.upperBound...]
            guard let end = rest.firstIndex(of: Character(quote)) else { return nil }
            return String(rest[..<end])
        }
        return nil
    }

    /// Ends the job whose socket is in `directory` (if it still runs) and removes the directory once
    /// libvirt has let go of its scratch files (it removes them itself, a moment after the abort). A
    /// job that is not ours is left alone. "No job" and "domain is not running" mean it ended already.
    static func endScript(vm: String, directory: String) -> String {
        """
        vm=\(ShellQuote.quote(vm)); d=\(ShellQuote.quote(directory)); s="socket='$d/nbd.sock'"; \
        if j=$(virsh backup-dumpxml "$vm" 2>/dev/null) && [ -z "${j##*"$s"*}" ]; then \
        if ! out=$(virsh domjobabort "$vm" 2>&1); then case "$out" in \
        *"no job is active"*|*"not running"*) ;; *) printf '%s\\n' "$out" >&2; exit 3;; esac; fi; fi; \
        i=0; while [ "$i" -lt 50 ] && ls "$d"/*.scratch >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done; \
        if j=$(virsh backup-dumpxml "$vm" 2>/dev/null) && [ -z "${j##*"$s"*}" ]; then echo BVM_STILL_RUNNING; exit 0; fi; \
        rm -rf "$d"
        """
    }

    public func end(vm: String, directory: String) throws {
        let out = try host.run(
            Self.endScript(vm: vm, directory: directory), what: "ending the backup job of \(vm) (virsh domjobabort)")
        if out.contains("BVM_STILL_RUNNING") {
            throw LiveBackupError.jobStillRunning(vm: vm, host: host.name, directory: directory)
        }
    }

    /// Thaws them; an agent that is not configured (so nothing was frozen) is no error.
    public func thaw(vm: String) throws(RemoteError) {
        try host.run(
            """
            if ! out=$(virsh domfsthaw \(ShellQuote.quote(vm)) 2>&1); then case "$out" in \
            *"not configured"*|*"domain is not running"*) ;; *) printf '%s\\n' "$out" >&2; exit 3;; esac; fi
            """, what: "thawing the file systems of \(vm) (virsh domfsthaw)")
    }
}
