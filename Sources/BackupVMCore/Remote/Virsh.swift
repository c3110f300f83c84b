import Foundation

/// libvirt on one hypervisor, through virsh over ssh. Domain names are validated (SafeName) before
/// they get here and quoted in every command line.
public struct Virsh: Sendable {
    public let host: RemoteHost

    public init(host: RemoteHost) { self.host = host }

    var hostName: String { host.name }

    /// Sets `$s` to the domain's state, or to `#absent` when virsh says the domain does not exist.
    /// Any other failure (libvirtd down or restarting, permissions) fails the script with virsh's
    /// message: "virsh failed" must never read as "not defined", or a thaw would think the VM gone.
    /// With `reason`, libvirt's reason for the state follows it (`paused (I/O error)`).
    static func domstate(_ vm: String, reason: Bool = false) -> String {
        let q = ShellQuote.quote(vm)
        return """
            if s=$(virsh -q domstate \(reason ? "--reason " : "")\(q) 2>&1); then :; \
            elif printf '%s' "$s" | grep -qiE 'failed to get domain|domain not found|no domain with matching'; then \
            s='#absent'; else printf '%s\\n' "$s" >&2; exit 3; fi
            """
    }

    /// nil when the domain is not defined on this host; an error when virsh cannot tell.
    public func state(_ vm: String) throws(RemoteError) -> DomainState? {
        let out = try host.run("\(Virsh.domstate(vm)); echo \"$s\"", what: "virsh domstate \(vm)")
        let text = out.trimmingCharacters(in: .whitespacesAndNewlines)
        return text == "#absent" ? nil : DomainState(virsh: text)
    }

    /// The state with libvirt's reason for it (`paused (I/O error)`); nil when the domain is not
    /// defined here, an error when virsh cannot tell.
    public func condition(_ vm: String) throws(RemoteError) -> DomainCondition? {
        let out = try host.run(
            "\(Virsh.domstate(vm, reason: true)); echo \"$s\"", what: "virsh domstate --reason \(vm)")
        let text = out.trimmingCharacters(in: .whitespacesAndNewlines)
        return text == "#absent" ? nil : DomainCondition(virsh: text)
    }

    /// Resumes a paused domain (a write that failed is retried by qemu then).
    public func resume(_ vm: String) throws(RemoteError) {
        try host.run("virsh resume \(ShellQuote.quote(vm)) >/dev/null", what: "virsh resume \(vm)")
    }

    /// State and definition age in one round trip (virsh itself takes a good part of a second to
    /// connect to libvirtd, so the locator asks everything at once). nil state: not defined here.
    public func sighting(_ vm: String) throws(RemoteError) -> (state: DomainState?, definitionTime: Int) {
        let out = try host.run(
            """
            \(Virsh.domstate(vm)); echo "$s"; if [ "$s" != '#absent' ]; then \
            stat -c %Y /etc/libvirt/qemu/\(ShellQuote.quote(vm + ".xml")) 2>/dev/null || echo 0; fi
            """, what: "virsh domstate \(vm)")
        let lines = out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let first = lines.first, first != "#absent" else { return (nil, 0) }
        return (DomainState(virsh: first), lines.count > 1 ? Int(lines[1]) ?? 0 : 0)
    }

    /// State, running XML and persistent XML in one round trip.
    public func inspect(_ vm: String) throws(RemoteError) -> (state: DomainState, liveXML: String, inactiveXML: String)?
    {
        let q = ShellQuote.quote(vm)
        let marker = "@backup_vm-\(UUID().uuidString)"
        let out = try host.run(
            """
            \(Virsh.domstate(vm)); if [ "$s" = '#absent' ]; then echo '#absent'; exit 0; fi; \
            echo "$s"; echo \(marker); virsh dumpxml \(q); echo \(marker); virsh dumpxml --inactive \(q)
            """, what: "inspecting \(vm)")
        if out.hasPrefix("#absent") { return nil }
        let parts = out.components(separatedBy: marker + "\n")
        guard parts.count == 3 else {
            throw .protocolViolation(
                host: hostName, what: "inspecting \(vm)", detail: "expected state and two XML documents")
        }
        return (DomainState(virsh: parts[0]), parts[1], parts[2])
    }

    public func shutdown(_ vm: String) throws(RemoteError) {
        try host.run("virsh shutdown \(ShellQuote.quote(vm)) >/dev/null", what: "virsh shutdown \(vm)")
    }

    public func start(_ vm: String) throws(RemoteError) {
        try host.run("virsh start \(ShellQuote.quote(vm)) >/dev/null", what: "virsh start \(vm)")
    }

    public func destroy(_ vm: String) throws(RemoteError) {
        try host.run("virsh destroy \(ShellQuote.quote(vm)) >/dev/null", what: "virsh destroy \(vm)")
    }

    /// Saves the RAM state to `file` and stops the domain.
    public func save(_ vm: String, to file: String) throws(RemoteError) {
        try host.run(
            "virsh save \(ShellQuote.quote(vm)) \(ShellQuote.quote(file)) >/dev/null", what: "virsh save \(vm)",
            step: .save)
    }

    public func restore(from file: String, paused: Bool) throws(RemoteError) {
        try host.run(
            "virsh restore \(ShellQuote.quote(file))\(paused ? " --paused" : "") >/dev/null",
            what: "virsh restore \(file)", step: .save)
    }

    /// The sysrq emergency sync (Alt+SysRq+S), then a second for the guest to write its buffers.
    public func sendEmergencySync(_ vm: String) throws(RemoteError) {
        try host.run(
            "virsh send-key \(ShellQuote.quote(vm)) KEY_LEFTALT KEY_SYSRQ KEY_S >/dev/null; sleep 1",
            what: "sysrq emergency sync")
    }

    /// Defines a domain from XML sent over ssh's stdin.
    public func define(xml: String, what: String) throws(RemoteError) {
        let tmp = FileManager.default.temporaryDirectory.path + "/backup_vm-define-\(getpid())-\(UUID().uuidString).xml"
        _ = FileManager.default.createFile(
            atPath: tmp, contents: Data(xml.utf8), attributes: [.posixPermissions: 0o600])
        defer { unlink(tmp) }
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .launch("cannot read \(tmp)") }
        defer { close(fd) }
        // Under CommandTimeout like every short command: a libvirtd that hangs on the define (or probes
        // qemu for minutes) is ended on the hypervisor and told as a timeout, not left to StallTimeout.
        _ = try host.stream(
            "t=$(mktemp); trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; virsh define \"$t\" >/dev/null",
            what: what, stdin: fd, step: .command
        ) { _ in true }
    }
}
