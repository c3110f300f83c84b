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
    /// A stored image is missing or differs from the manifest (size, SHA-256): found before anything
    /// on a hypervisor is touched.
    case damagedImage(vm: String, id: String, file: String, detail: String)
    /// Where a disk goes cannot take it; `what` says why and what to do.
    case unfitDestination(disk: String, path: String, host: String, what: String)
    /// Not enough room for the new LVs, written before the old ones are replaced.
    case noSpace(NoSpace)
    /// SIGINT/SIGTERM/SIGHUP before the VM was stopped: what was written aside is removed.
    case aborted
    /// The stored domain XML cannot be defined as restored (a disk it cannot be given its restored
    /// path, a disk that was neither restored nor excluded, ...): found before anything is written.
    case unusableDomainXML(vm: String, id: String, detail: String)
    /// A directory the domain's consoles or logs write into is missing on the target host.
    case missingDirectory(path: String, host: String, name: String)
    /// A copy's disk would go where a file or LV exists already (it may be another VM's disk).
    case copyTargetExists(paths: [String], host: String, name: String)

    /// A volume group (or thin pool) without room for the new LVs of a restore.
    public struct NoSpace: Sendable, Equatable {
        /// "volume group vg0" or "thin pool vg0/pool".
        public var place: String
        public var host: String
        public var freeBytes: Int64
        public var neededBytes: Int64
        /// The disks and the size of the new LV each needs.
        public var disks: [String]
        /// LVs of interrupted restores of ours in that volume group.
        public var leftovers: [String]
    }

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
        case .damagedImage(let vm, let id, let file, let detail):
            return "backup \(id) of \(vm) is damaged: \(file): \(detail); nothing was restored and nothing on a"
                + " hypervisor was touched. Restore another backup (--backup ID; backup_vm list \(vm))"
        case .unfitDestination(let disk, let path, let host, let what):
            return "\(disk): \(path) on \(host) \(what); nothing was touched"
        case .noSpace(let n):
            let leftovers =
                n.leftovers.isEmpty
                ? ""
                : "; LVs left by interrupted restores hold space there: \(n.leftovers.joined(separator: ", "))"
                    + " (lvremove them if no restore runs)"
            return "\(n.place) on \(n.host) has \(ByteCount(n.freeBytes)) free; the restore needs"
                + " \(ByteCount(n.neededBytes)) for new LVs (\(n.disks.joined(separator: ", "))), written and"
                + " checked before the old ones are replaced\(leftovers). Make room, or restore elsewhere (--to-host,"
                + " --as); nothing was touched"
        case .unusableDomainXML(let vm, let id, let detail):
            return "backup \(id) of \(vm) cannot be defined as restored: \(detail); nothing was touched"
        case .copyTargetExists(let paths, let host, let name):
            return
                "\(paths.joined(separator: ", ")) exist\(paths.count == 1 ? "s" : "") on \(host): the copy \(name)'s disks"
                + " would replace \(paths.count == 1 ? "it" : "them") (another VM's disk, or a copy made earlier);"
                + " restore under another name, remove \(paths.count == 1 ? "it" : "them"), or pass --force to replace"
                + " \(paths.count == 1 ? "it" : "them"); nothing was touched"
        case .missingDirectory(let path, let host, let name):
            return "\(path) does not exist on \(host): \(name)'s console, serial port or log writes there and it could"
                + " not start; create it (mkdir -p \(path), owned as on the original's host) and restore again;"
                + " nothing was touched"
        case .aborted:
            return "aborted on request (SIGINT/SIGTERM/SIGHUP) before the VM was stopped; what was written beside"
                + " the disks is removed, the disks and the VM are as they were"
        case .liveVM(let name, let state, let host):
            return "\(name) is \(state.rawValue) on \(host); restoring would overwrite the disks of a live VM. Shut it"
                + " down first, restore under another name (--as), or pass --force to stop it"
        }
    }
}
