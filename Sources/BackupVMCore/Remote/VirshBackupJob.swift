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
    /// begun over: a second backup-begin waits 30 s on libvirt's state lock before it fails; a
    /// backup-dumpxml that fails for any other reason than "no job" (libvirtd away) fails the script.
    /// The directory belongs to the qemu process's user (qemu creates the socket and opens the scratch
    /// files itself) and is closed to everyone else; the VM's working directory and WorkPath above it
    /// are made searchable (not readable: `a+x`) for that user (WorkPath made by this tool under
    /// umask 077 is 0700), and every directory above those must be already (`x`, or `t`: sticky
    /// and searchable, like /tmp).
    ///
    /// Room: the job begins only if its directory's file system has what the scratch files may grow
    /// to (ScratchRoom), else `BVM_NO_ROOM AVAILABLE NEEDED OTHERS` and exit 5; the worst case is left
    /// in the directory for the checks of later jobs.
    ///
    /// With `quiesce`, the freeze, the begin and the thaw are one script, so the guest's file systems
    /// are frozen only for the begin itself (copy-before-write fixes the view from then on) and the
    /// thaw does not wait for a round trip; an EXIT trap thaws on every way out (also when `timeout`
    /// ends the script: TERM exits through it). The freeze is bounded on its own: when freezing and
    /// beginning take longer than FreezeTimeout (the begin waits on libvirt's state lock, the agent
    /// hangs), the file systems are thawed at once, the directory is removed (a begin that libvirt
    /// completes later fails without it; one completed just now is ended by the caller) and the
    /// script exits 4 (`BVM_FREEZE_TIMEOUT`). The sysrq emergency sync is sent first; without an
    /// agent answering, the begin comes a second after it. What happened is told on stdout
    /// (`BVM_FROZE`, `BVM_THAWED MS`, `BVM_NOFREEZE WHY`, `BVM_NOSYNC`); a thaw that failed on stderr
    /// (`BVM_THAW_FAILED`).
    static func beginScript(_ request: LiveJobRequest, xml: String, runDirectory: String) -> String {
        let quiesce = request.quiesce
        // The sysrq emergency sync goes first, so that the guest's second to write its buffers runs
        // while the directory is made and the agent is asked; without an agent the begin waits only
        // for what is left of that second. With an agent it is one more sync before the freeze.
        let sync =
            quiesce
            ? "s0=$(date +%s%N); if virsh send-key \"$vm\" KEY_LEFTALT KEY_SYSRQ KEY_S >/dev/null 2>&1; then y=1; else y=0; fi; "
            : ""
        return """
            vm=\(ShellQuote.quote(request.vm)); d=\(ShellQuote.quote(request.directory)); w=${d%/*}; w=${w%/*}; \
            if j=$(virsh backup-dumpxml "$vm" 2>&1); then \
            echo "BVM_JOB_RUNNING $(printf '%s\\n' "$j" | sed -n "s/.*socket='\\([^']*\\)'.*/\\1/p" | head -n 1)"; exit 0; fi; \
            case "$j" in *"no domain backup job"*) ;; *) printf '%s\\n' "$j" >&2; exit 3;; esac; \
            \(sync)r=\(ShellQuote.quote(runDirectory)); \
            p=$(cat "$r/$vm.pid" 2>/dev/null) || { echo "no qemu process of $vm ($r/$vm.pid)" >&2; exit 3; }; \
            u=$(stat -c %u "/proc/$p"); \
            rm -rf "$d"; mkdir -p "$d"; chown "$u" "$d"; chmod 700 "$d"; v=${d%/*}; chmod a+x "$v" "${v%/*}"; a=${v%/*}; \
            while a=${a%/*}; [ -n "$a" ]; do case $(stat -c %A "$a") in *[xt]) ;; *) rm -rf "$d"; \
            echo "$a is not searchable by the qemu user (uid $u), which must reach the job's socket and scratch files: chmod o+x $a" >&2; \
            exit 3;; esac; done; \
            \(roomCheck(request.disks))\(freezeAndBegin(request, xml: xml))virsh backup-dumpxml "$vm"
            """
    }

    /// The room check: fails with `BVM_NO_ROOM` (exit 5) when the worst case does not fit.
    static func roomCheck(_ disks: [DomainDisk]) -> String {
        """
        \(ScratchRoom.needScript(disks)); \(ScratchRoom.outstandingScript(skipOwn: true)); \(ScratchRoom.availableScript); \
        if [ "$avail" -lt $((need + others + \(ScratchRoom.margin))) ]; then rm -rf "$d"; \
        echo "BVM_NO_ROOM $avail $need $others"; exit 5; fi; \
        printf '%s\\n' "$need" > "$d/\(ScratchRoom.reservationFile)"; echo "BVM_ROOM $avail $need $others"; \

        """
    }

    /// Freeze (with `quiesce`), begin in the background, wait for it within FreezeTimeout while
    /// frozen, thaw.
    static func freezeAndBegin(_ request: LiveJobRequest, xml: String) -> String {
        let freeze =
            request.quiesce
            ? """
            if out=$(timeout -k 1 "$ft" virsh domfsfreeze "$vm" 2>&1); then f=1; \
            echo "BVM_FROZE $(printf '%s' "$out" | tr '\\n' ' ')"; \
            else c=$?; if [ "$c" -ge 124 ]; then f=1; rm -rf "$d"; echo "BVM_FREEZE_TIMEOUT $ft"; exit 4; fi; \
            echo "BVM_NOFREEZE $(printf '%s' "$out" | tr '\\n' ' ')"; \
            if [ "$y" = 1 ]; then ms=$((1000 - ($(date +%s%N) - s0) / 1000000)); \
            [ "$ms" -le 0 ] || sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"; else echo BVM_NOSYNC; fi; fi; \

            """ : ""
        return """
            ft=\(request.freezeTimeout); f=0; e=$(mktemp); thaw() { [ "$f" = 1 ] || return 0; f=0; \
            if timeout -k 1 30 virsh domfsthaw "$vm" >/dev/null 2>&1 || { sleep 1; timeout -k 1 30 virsh domfsthaw "$vm" >/dev/null 2>&1; }; \
            then echo "BVM_THAWED $((($(date +%s%N) - t0) / 1000000))"; else echo BVM_THAW_FAILED >&2; fi; }; \
            trap 'thaw; rm -f "$e"' EXIT; trap 'exit 143' TERM; t0=$(date +%s%N); \
            \(freeze)printf '%s' \(ShellQuote.quote(xml)) | virsh backup-begin "$vm" /dev/stdin >/dev/null 2>"$e" & b=$!; \
            while kill -0 "$b" 2>/dev/null; do \
            if [ "$f" = 1 ] && [ $(($(date +%s%N) - t0)) -ge $((ft * 1000000000)) ]; then thaw; rm -rf "$d"; \
            kill "$b" 2>/dev/null || true; echo "BVM_FREEZE_TIMEOUT $ft"; exit 4; fi; sleep 0.05; done; \
            if ! wait "$b"; then cat "$e" >&2; rm -rf "$d"; exit 3; fi; thaw; \

            """
    }

    /// Begins the job (around a quiesce, when asked); `.running(socket)` when one already runs on
    /// the domain (nothing begun, nothing frozen). A thaw that failed is `thawFailed` (the caller
    /// thaws again), or, when the begin failed too, LiveBackupError.thawFailed.
    public func begin(_ request: LiveJobRequest) throws -> LiveBegin {
        let (vm, directory) = (request.vm, request.directory)
        let socket = LiveJob.socket(in: directory)
        guard socket.utf8.count <= LiveJob.maximumSocketPath else {
            throw LiveBackupError.socketPathTooLong(path: socket)
        }
        // libvirt prints the socket path XML-escaped in backup-dumpxml, where `end` must find it again.
        guard LiveJob.isPlainPath(directory) else { throw LiveBackupError.unplainDirectory(path: directory) }
        let xml = Self.backupXML(directory: directory, targets: request.disks.map(\.target), excluded: request.excluded)
        let script = Self.beginScript(request, xml: xml, runDirectory: qemuRunDirectory)
        let what = "starting the backup job of \(vm) (virsh backup-begin)"
        let r = try host.probe(script, what: what)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        guard r.status == 0 else { throw Self.beginFailure(request, r, lines: lines, host: host.name, what: what) }
        return try Self.begun(request, r, lines: lines)
    }

    /// The value after a marker line (`BVM_FROZE Froze 1 filesystem(s)` → `Froze 1 filesystem(s)`).
    static func marker(_ name: String, in lines: [String]) -> String? {
        lines.first { $0.hasPrefix(name + " ") || $0 == name }.map {
            String($0.dropFirst(name.count)).trimmingCharacters(in: .whitespaces)
        }
    }

    /// A begin script that did not exit 0: the error that says why.
    static func beginFailure(
        _ request: LiveJobRequest, _ r: ProcessOutcome, lines: [String], host: String, what: String
    ) -> Error {
        let thawFailed = r.stderr.contains("BVM_THAW_FAILED")
        let stderr = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("BVM_") }.joined(separator: "\n")
        let error = RemoteError.command(host: host, what: what, status: r.status, stderr: stderr)
        if thawFailed { return LiveBackupError.thawFailed(vm: request.vm, host: host, cause: "\(error)") }
        if r.status == 4, marker("BVM_FREEZE_TIMEOUT", in: lines) != nil {
            return LiveBackupError.freezeTimeout(vm: request.vm, host: host, seconds: request.freezeTimeout)
        }
        if r.status == 5, let room = marker("BVM_NO_ROOM", in: lines) {
            let n = room.split(separator: " ").compactMap { Int64($0) }
            if n.count == 3 {
                return LiveBackupError.noScratchRoom(
                    vm: request.vm, host: host, directory: request.directory, available: n[0], needed: n[1],
                    others: n[2])
            }
        }
        return error
    }

    /// What a begin script that exited 0 told: a job already running, or the one it began.
    static func begun(_ request: LiveJobRequest, _ r: ProcessOutcome, lines: [String]) throws -> LiveBegin {
        var quiesced: QuiesceResult?
        if let froze = marker("BVM_FROZE", in: lines) {
            // "Froze 2 filesystem(s)"
            let count = froze.split(separator: " ").compactMap { Int($0) }.first ?? 0
            quiesced = .frozen(count: count, milliseconds: marker("BVM_THAWED", in: lines).flatMap { Int($0) })
        } else if let why = marker("BVM_NOFREEZE", in: lines) {
            quiesced = .unavailable(RemoteError.trim(why), synced: marker("BVM_NOSYNC", in: lines) == nil)
        }
        if let socket = marker("BVM_JOB_RUNNING", in: lines) {
            return LiveBegin(outcome: .running(socket: socket), quiesce: nil, thawFailed: false)
        }
        let exports = Self.exports(inDumpXML: r.stdout)
        var named: [String: String] = [:]
        for target in request.disks.map(\.target) {
            guard let export = exports[target], SafeName.isValidExportName(export) else {
                throw LiveBackupError.noExport(vm: request.vm, target: target)
            }
            named[target] = export
        }
        let room = marker("BVM_ROOM", in: lines)?.split(separator: " ").compactMap { Int64($0) } ?? []
        var begin = LiveBegin(
            outcome: .begun(LiveJob(directory: request.directory, exports: named)), quiesce: quiesced,
            thawFailed: r.stderr.contains("BVM_THAW_FAILED"))
        if room.count == 3 { begin.scratch = LiveBegin.Scratch(available: room[0], needed: room[1], others: room[2]) }
        return begin
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
}
