import Foundation

/// What is done to a running backup job: its scratch space read, the job ended, the file systems
/// thawed. What cannot be read is never taken for "no job": a backup-dumpxml that fails because
/// libvirtd is away (restarting, the connection to it cut) fails the script, so that the job's
/// directory is kept and the caller tries again (docs/live-backup-spike.md §6).
extension VirshBackupJob {
    /// Shell: `nojob TEXT` succeeds when virsh's error text says that there is no backup job (none
    /// present, the domain not running, the domain gone).
    static let noJobFunction = """
        nojob() { case "$1" in *"no domain backup job"*|*"not running"*|*"failed to get domain"*|\
        *"omain not found"*) return 0;; esac; return 1; }
        """

    /// Ends the job whose socket is in `directory` (if it still runs) and removes the directory once
    /// libvirt has let go of its scratch files (it removes them itself, a moment after the abort). A
    /// job that is not ours is left alone. "No job" and "domain is not running" mean it ended already;
    /// any other failure to ask keeps the directory and fails.
    static func endScript(vm: String, directory: String) -> String {
        """
        vm=\(ShellQuote.quote(vm)); d=\(ShellQuote.quote(directory)); s="socket='$d/nbd.sock'"; \(noJobFunction); \
        if j=$(virsh backup-dumpxml "$vm" 2>&1); then if [ -z "${j##*"$s"*}" ]; then \
        if ! out=$(virsh domjobabort "$vm" 2>&1); then case "$out" in \
        *"no job is active"*|*"not running"*) ;; *) printf '%s\\n' "$out" >&2; exit 3;; esac; fi; fi; \
        elif ! nojob "$j"; then printf '%s\\n' "$j" >&2; exit 3; fi; \
        i=0; while [ "$i" -lt 50 ] && ls "$d"/*.scratch >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done; \
        if j=$(virsh backup-dumpxml "$vm" 2>&1); then [ -n "${j##*"$s"*}" ] || { echo BVM_STILL_RUNNING; exit 0; }; \
        elif ! nojob "$j"; then printf '%s\\n' "$j" >&2; exit 3; fi; \
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

    /// The scratch space of the job in `directory` and the domain's condition, in one round trip.
    static func scratchScript(vm: String, directory: String) -> String {
        """
        d=\(ShellQuote.quote(directory)); w=${d%/*}; w=${w%/*}; \(ScratchRoom.outstandingScript(skipOwn: false)); \
        \(ScratchRoom.availableScript); u=$(du -s -B1 "$d" | cut -f1); \(Virsh.domstate(vm, reason: true)); \
        echo "BVM_SCRATCH $avail $others $u"; printf '%s\\n' "$s"
        """
    }

    public func scratch(vm: String, directory: String) throws(RemoteError) -> ScratchReading {
        let what = "reading the scratch space of the backup job of \(vm)"
        let out = try host.run(Self.scratchScript(vm: vm, directory: directory), what: what)
        let lines = out.split(separator: "\n").map(String.init)
        guard let index = lines.firstIndex(where: { $0.hasPrefix("BVM_SCRATCH ") }), index + 1 < lines.count
        else { throw .protocolViolation(host: host.name, what: what, detail: "no BVM_SCRATCH line") }
        let n = lines[index].split(separator: " ").dropFirst().compactMap { Int64($0) }
        guard n.count == 3 else {
            throw .protocolViolation(host: host.name, what: what, detail: "\(lines[index])")
        }
        let state = lines[index + 1].trimmingCharacters(in: .whitespaces)
        return ScratchReading(
            available: n[0], outstanding: n[1], used: n[2],
            condition: state == "#absent" ? nil : DomainCondition(virsh: state))
    }
}
