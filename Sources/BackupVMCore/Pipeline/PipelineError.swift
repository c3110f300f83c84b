/// Errors of the backup pipeline, each telling the operator what happened and what to do.
public enum PipelineError: Error, CustomStringConvertible, Sendable {
    case aborted
    case vanished(vm: String, host: String)
    case shutdownTimedOut(vm: String, seconds: Int)
    /// The VM could not be returned to the state it had before the backup: the loudest failure.
    case notReturnedToPriorState(vm: String, host: String, prior: String, detail: String)
    case failed(String)

    public var description: String {
        switch self {
        case .aborted:
            return "aborted on request (SIGTERM/SIGINT); the VM was returned to its prior state"
        case .vanished(let vm, let host):
            return "\(vm) disappeared from \(host) during the backup (migrated or undefined?)"
        case .shutdownTimedOut(let vm, let seconds):
            return
                "\(vm) did not shut down within \(seconds) s of the ACPI request (does the guest handle the power button?); it keeps running; set ForceOff=yes in its vmsnapshot.d profile to force it off after the timeout, or use Mode=hot on LVM"
        case .notReturnedToPriorState(let vm, let host, let prior, let detail):
            return
                "ATTENTION: \(vm) on \(host) could not be returned to its prior state (\(prior)): \(detail); check it by hand now"
        case .failed(let what):
            return what
        }
    }
}
