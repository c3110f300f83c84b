import Foundation
import Logging

/// Returning a VM to the state it had before a backup touched it: the one place that decides how,
/// used by the thaw of every backup (on every path) and by the recovery of a dead worker's job.
///
/// Running before: a VM found shut off is restored from its saved RAM state when there is one (hot),
/// else started (cold). Paused before: restored paused from its RAM state. Shut off before: nothing.
/// A VM found in any other state than shut off is left as it is: it is already back (or someone else
/// has acted on it, and starting it again would be wrong).
enum PriorState {
    static func restore(
        _ vm: String, to prior: DomainState, ramFile: String?, on hypervisor: any Hypervisor, log: Logger,
        retryDelay: TimeInterval = 2
    ) throws {
        let now = try currentState(vm, on: hypervisor, log: log, retryDelay: retryDelay)
        guard now == .shutOff else { return }
        switch prior {
        case .running, .other:
            if let ramFile {
                try hypervisor.restore(from: ramFile, paused: false)
                log.info("RAM state restored, running again")
            } else {
                try hypervisor.start(vm)
                log.info("started again")
            }
        case .paused:
            if let ramFile {
                try hypervisor.restore(from: ramFile, paused: true)
                log.info("RAM state restored, paused as before")
            }
        case .shutOff:
            break
        }
    }

    /// The domain's state, asked up to five times: libvirtd restarting for a few seconds must not
    /// leave a VM off. A domain that is no longer defined is an error here, never "nothing to do".
    static func currentState(
        _ vm: String, on hypervisor: any Hypervisor, log: Logger, retryDelay: TimeInterval
    ) throws -> DomainState {
        var attempt = 1
        while true {
            do {
                guard let state = try hypervisor.state(vm) else {
                    throw PipelineError.vanished(vm: vm, host: hypervisor.name)
                }
                return state
            } catch let error as RemoteError where attempt < 5 {
                log.warning("cannot tell the state of \(vm) (attempt \(attempt) of 5): \(error)")
                attempt += 1
                Thread.sleep(forTimeInterval: retryDelay)
            }
        }
    }
}
