/// The working path on a hypervisor (WorkPath) holds what root runs and writes there: the chunk
/// store's helper (checked by SHA-256, then executed: safe only if nobody else can swap the file in
/// between), staged copies, RAM states, a restore test's disks. If anyone but root can write WorkPath
/// or a directory above it, they can replace those files or plant links in their place. Every job
/// (and doctor) checks, before it uses WorkPath, that WorkPath and every directory above it (as
/// named, and after links are resolved) belongs to root and is not writable by group or others; a
/// directory above it may be world-writable only if it is sticky (like /tmp: nobody can rename
/// what root made in it).
public enum WorkPathGuard {
    /// A shell function `bvm_workpath_check DIR`: prints why DIR is unsafe and returns 1, or returns 0.
    static let function = """
        bvm_workpath_check() { local w=$1 p q s u m; for p in "$w" "$(readlink -m -- "$w")"; do q=$p; \
        while [ -n "$q" ]; do if [ -e "$q" ] || [ -L "$q" ]; then \
        s=$(stat -c '%u %a' -- "$q") || { echo "cannot stat $q"; return 1; }; u=${s% *}; m=$((8#${s#* })); \
        [ "$u" = 0 ] || { echo "$q belongs to uid $u, not root"; return 1; }; \
        if [ ! -L "$q" ] && [ $((m & 18)) -ne 0 ] && { [ "$q" = "$p" ] || [ $((m & 512)) -eq 0 ]; }; then \
        echo "$q is writable by group or others (mode ${s#* })"; return 1; fi; fi; \
        [ "$q" = / ] && break; q=$(dirname -- "$q"); done; done; return 0; }
        """

    /// Fails the script (exit 3, the reason on stderr) unless `workPath` is safe.
    static func require(_ workPath: String) -> String {
        let q = ShellQuote.quote(workPath)
        return "\(function); if ! r=$(bvm_workpath_check \(q)); then printf '%s\\n' \"WorkPath $(printf %s \(q)) is not"
            + " safe: $r; others could replace what root runs and writes there: make it and every directory above it"
            + " root's and not writable by group or others (chown root; chmod go-w), or set another WorkPath\" >&2; exit 3; fi"
    }
}
