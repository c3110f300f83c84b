/// Why the backup of one VM failed, told so that an operator knows what to do. Failures of the
/// commands themselves are RemoteError (hypervisor), TransferError (the two ends disagree),
/// DomainXML.Problem (the domain cannot be backed up as defined) or SystemError (this server).
public enum PipelineError: Error, CustomStringConvertible, Sendable, Equatable {
    /// SIGTERM/SIGINT during the backup: rolled back.
    case aborted
    /// The domain was found by the locator but is gone by the time it is inspected.
    case vanished(vm: String, host: String)
    /// ExcludeLVs names every disk.
    case everyDiskExcluded(vm: String)
    /// The guest did not act on the ACPI request in time and ForceOff is off.
    case shutdownTimedOut(vm: String, seconds: Int)
    /// ForceOff: even `virsh destroy` did not stop it.
    case stillRunningAfterDestroy(vm: String)
    /// The snapshot filled up while it was copied: the copy is not consistent.
    case snapshotOverflowed(snapshot: String, origin: String, detail: String, snapshotSize: String)
    /// The VM could not be returned to the state it had before the backup: the loudest failure.
    /// `ramFile` is the saved RAM state that is kept to bring it back; `backupFailure` what had failed
    /// before the thaw, if anything.
    case notReturnedToPriorState(
        vm: String, host: String, prior: DomainState, cause: String, ramFile: String?, backupFailure: String?)
    /// An earlier backup could not return the VM to its prior state; nothing is done until an
    /// operator has checked it and cleared the mark.
    case needsAttention(vm: String, detail: String)
    /// What an earlier backup left (a live job that could not be ended, a dead worker's partial
    /// backup) could not be cleaned up before this one: nothing new is begun on top of it.
    case leftoverNotRecovered(vm: String, cause: String)

    public var description: String {
        switch self {
        case .aborted:
            return "aborted on request (SIGTERM/SIGINT); the VM was returned to its prior state"
        case .vanished(let vm, let host):
            return "\(vm) disappeared from \(host) during the backup (migrated or undefined?)"
        case .everyDiskExcluded(let vm):
            return "every disk of \(vm) is excluded (ExcludeLVs); nothing to back up"
        case .shutdownTimedOut(let vm, let seconds):
            return "\(vm) did not shut down within \(seconds) s of the ACPI request (does the guest handle the"
                + " power button?); it keeps running; set ForceOff=yes in its vmsnapshot.d profile to force it off"
                + " after the timeout, or use Mode=hot on LVM"
        case .stillRunningAfterDestroy(let vm):
            return "\(vm) is still not off after virsh destroy"
        case .snapshotOverflowed(let snapshot, let origin, let detail, let size):
            return "snapshot overflowed: \(snapshot) of \(origin) filled up during the copy (\(detail)); the copy is"
                + " not consistent. Give it more room (SnapshotSize, now \(size))"
        case .notReturnedToPriorState(let vm, let host, let prior, let cause, let ramFile, let backupFailure):
            // What to do comes first and the causes, cut short, last: a record keeps ReasonText.limit bytes.
            let keep = ramFile.map { "; its RAM state is kept in \($0) on \(host): `virsh restore \($0)`" } ?? ""
            let also = backupFailure.map { "; the backup had failed too: \(ReasonText.oneLine($0, limit: 120))" } ?? ""
            return "ATTENTION: \(vm) on \(host) could not be returned to its prior state (\(prior.rawValue))\(keep);"
                + " check it by hand now, then `backup_vm resolve \(vm)` (no backup of it runs until then);"
                + " why: \(ReasonText.oneLine(cause, limit: 120))\(also)"
        case .needsAttention(let vm, let detail):
            return "ATTENTION: \(vm) needs attention: \(detail); check it by hand, then `backup_vm resolve \(vm)`"
        case .leftoverNotRecovered(let vm, let cause):
            return "an earlier backup of \(vm) left a job or files that could not be cleaned up yet (\(cause));"
                + " nothing was begun: the next backup tries again"
        }
    }
}
