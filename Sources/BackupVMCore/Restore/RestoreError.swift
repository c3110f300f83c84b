/// Why a restore was refused or could not start; every refusal comes before anything is written.
public enum RestoreError: Error, CustomStringConvertible, Sendable, Equatable {
    case noBackups(vm: String, directory: String)
    case noSuchBackup(vm: String, id: String, have: [String])
    case hostNotConfigured(host: String, hosts: [String])
    /// `--with-ram` for a backup that saved no RAM state.
    case noRAMState(vm: String, id: String, mode: SnapshotMode, priorState: DomainState)
    /// `--with-ram` with `--as`.
    case ramStateWithNewName
    case invalidName(String)
    /// The VM runs (or is paused) and `--force` was not given.
    case liveVM(name: String, state: DomainState, host: String)
    /// `--as NEW` where NEW is already defined (or a host cannot be asked).
    case nameTaken(name: String, host: String)
    case cannotCheckName(name: String, host: String, detail: String)
    /// A backup (or another restore) of the VM holds its lock.
    case vmBusy(name: String, holder: String)

    public var description: String {
        switch self {
        case .noBackups(let vm, let directory):
            return "no backup of \(vm) in \(directory)"
        case .noSuchBackup(let vm, let id, let have):
            return "no backup \(id) of \(vm) (have: \(have.joined(separator: ", ")))"
        case .hostNotConfigured(let host, let hosts):
            return "host '\(host)' is not in HostServers (\(hosts.joined(separator: " ")))"
        case .noRAMState(let vm, let id, let mode, let prior):
            return "backup \(id) of \(vm) is a \(mode.rawValue) backup of a VM that was \(prior.rawValue): it has no"
                + " RAM state; restore it without --with-ram (and --start to boot it)"
        case .ramStateWithNewName:
            return "--with-ram cannot be combined with --as: a saved RAM state belongs to the original domain (its"
                + " name, UUID and devices); restore the copy without --with-ram"
        case .invalidName(let name):
            return "'\(name)' is not a valid VM name; expected \(SafeName.vmExpectation)"
        case .nameTaken(let name, let host):
            return "a domain named \(name) already exists on \(host); restoring a copy under that name would write over"
                + " its disks. Choose another name (--as), or undefine it first"
        case .cannotCheckName(let name, let host, let detail):
            return "cannot tell whether \(name) already exists on \(host) (\(detail)); a copy is restored only under a"
                + " name that exists nowhere"
        case .vmBusy(let name, let holder):
            return "a backup or restore of \(name) is running (\(holder)); wait for it to finish"
        case .liveVM(let name, let state, let host):
            return "\(name) is \(state.rawValue) on \(host); restoring would overwrite the disks of a live VM. Shut it"
                + " down first, restore under another name (--as), or pass --force to stop it"
        }
    }
}
