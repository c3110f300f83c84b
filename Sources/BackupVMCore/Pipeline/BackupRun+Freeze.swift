import Foundation

/// Freeze and thaw: the VM stops being written to (shut down, or its RAM saved) for as short a time
/// as the plan allows, and goes back to its prior state.
extension BackupRun {
    /// Cold, running VM: ACPI shutdown. Hot: the sysrq emergency sync, then `virsh save`. Paused VM:
    /// its RAM is saved either way. Shut off: nothing.
    func freeze() throws {
        switch plan.priorState {
        case .running, .other:
            frozenAt = Date()
            if plan.mode == .hot, let ramFile = plan.ramFile {
                // A guest that ignores the sysrq is still saved consistently, only with less on its disks.
                do { try hypervisor.sendEmergencySync(plan.vm) } catch {
                    log.warning("the emergency sync could not be sent; saving anyway")
                }
                try hypervisor.save(plan.vm, to: ramFile)
                log.info("RAM state saved", metadata: ["file": "\(ramFile)"])
            } else {
                try shutDown()
            }
        case .paused:
            if let ramFile = plan.ramFile {
                try hypervisor.save(plan.vm, to: ramFile)
                log.info("paused VM: RAM state saved", metadata: ["file": "\(ramFile)"])
            }
        case .shutOff:
            break
        }
        try record(.frozen)
    }

    /// ACPI shutdown, re-sent every 10 s (a booting guest misses the button), up to ShutdownTimeout;
    /// then ForceOff forces it off, or the backup fails with the VM still running.
    func shutDown() throws {
        try hypervisor.shutdown(plan.vm)
        if try waitUntilOff(timeout: TimeInterval(plan.shutdownTimeout), resendShutdownEvery: 10) {
            log.info("shut down")
            return
        }
        if abort.isRaised {
            try settleAfterShutdownRequest()
            throw PipelineError.aborted
        }
        guard plan.forceOff else {
            try settleAfterShutdownRequest()
            throw PipelineError.shutdownTimedOut(vm: plan.vm, seconds: plan.shutdownTimeout)
        }
        log.warning("no shutdown within \(plan.shutdownTimeout) s: forcing it off (ForceOff=yes)")
        try hypervisor.destroy(plan.vm)
        guard try waitUntilOff(timeout: 30, resendShutdownEvery: nil, abortable: false) else {
            throw PipelineError.stillRunningAfterDestroy(vm: plan.vm)
        }
    }

    /// An ACPI request cannot be taken back: a slow guest may still be shutting down when we give up.
    /// Wait a while (30 s, at most ShutdownTimeout) for it to settle, so that the thaw sees it off (and starts it again) instead of
    /// leaving it off a moment after the job said it keeps running.
    func settleAfterShutdownRequest() throws {
        let window = min(pollInterval * 60, TimeInterval(plan.shutdownTimeout))
        if try waitUntilOff(timeout: window, resendShutdownEvery: nil, abortable: false) {
            log.warning("\(plan.vm) went off after all, after the shutdown timeout: starting it again")
        }
    }

    /// Polls until the domain is shut off; false on timeout (or on abort, when `abortable`).
    func waitUntilOff(timeout: TimeInterval, resendShutdownEvery: TimeInterval?, abortable: Bool = true) throws -> Bool
    {
        let deadline = Date().addingTimeInterval(timeout)
        var nextResend = resendShutdownEvery.map { Date().addingTimeInterval($0) }
        repeat {
            if try hypervisor.state(plan.vm) == .shutOff { return true }
            if abortable && abort.isRaised { return false }
            if let due = nextResend, let every = resendShutdownEvery, Date() >= due {
                try? hypervisor.shutdown(plan.vm)
                nextResend = due.addingTimeInterval(every)
            }
            Thread.sleep(forTimeInterval: pollInterval)
        } while Date() < deadline
        return try hypervisor.state(plan.vm) == .shutOff
    }

    /// Returns the VM to its prior state (once; later calls do nothing). The downtime ends here.
    func thaw() throws {
        guard !thawed else { return }
        try PriorState.restore(
            plan.vm, to: plan.priorState, ramFile: plan.ramFile, on: hypervisor, log: log,
            retryDelay: pollInterval * 4)
        thawed = true
        if let frozenAt { downtime = Date().timeIntervalSince(frozenAt) }
        try record(.thawed)
    }
}
