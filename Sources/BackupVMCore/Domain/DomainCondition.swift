/// A domain's state with the reason libvirt gives for it (`virsh domstate --reason`: `paused (I/O
/// error)`, `running (booted)`): a live backup must tell a VM that qemu paused because a write
/// failed (the copy-before-write's scratch file system full) from one an operator paused.
public struct DomainCondition: Sendable, Equatable {
    public var state: DomainState
    /// The text in parentheses, as virsh prints it (empty when there is none).
    public var reason: String

    public init(state: DomainState, reason: String) {
        self.state = state
        self.reason = reason
    }

    /// `paused (I/O error)` → paused, "I/O error".
    public init(virsh text: String) {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let open = line.firstIndex(of: "("), line.hasSuffix(")") else {
            self.init(state: DomainState(virsh: line), reason: "")
            return
        }
        let reason = line[line.index(after: open)..<line.index(before: line.endIndex)]
        self.init(state: DomainState(virsh: String(line[..<open])), reason: String(reason))
    }

    /// qemu stopped the guest because a write (or read) failed: with the default error policy
    /// (`werror=enospc`) a full scratch file system pauses the VM this way instead of failing the
    /// guest's write; the write is retried when the VM is resumed.
    public var pausedByIOError: Bool { state == .paused && reason == "I/O error" }

    public var description: String { reason.isEmpty ? state.rawValue : "\(state.rawValue) (\(reason))" }
}
