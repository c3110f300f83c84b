import Foundation
import Logging

/// The order of a restore that keeps every disk as it was until all new ones are complete: first
/// every disk is written beside its own (new LVs, files beside the files; up to `streams` at once)
/// while the VM may still run; then the VM is stopped (only now, when nothing can fail for want of a
/// good image or of room); then devices that are not LVs are written in place; then every disk is
/// swapped in and the domain defined. A failure anywhere before that end swaps back what was swapped
/// and removes what was written; only then are the replaced disks removed. Each step logs how long
/// it took.
struct RestoreTransaction {
    let disks: [any DiskRestore]
    let abort: AbortFlag
    let log: Logger
    /// Disks written beside their own at once (RestoreStreams).
    var streams = 1

    /// `stop` stops the VM (or refuses); `define` defines the domain once every disk is in place.
    func run(from stored: (any DiskRestore) -> String, stop: () throws -> Void, define: () throws -> Void) throws {
        var swapped: [any DiskRestore] = []
        do {
            let aside = disks.filter(\.writesAside)
            var t0 = Date()
            try DiskWrites(width: streams, abort: abort, log: log).run(aside.map { ($0, stored($0)) })
            if aside.count > 1 {
                log.info(
                    "all \(aside.count) disks written and checked",
                    metadata: ["seconds": "\(StepClock.seconds(since: t0))", "streams": "\(min(streams, aside.count))"])
            }
            guard !abort.isRaised else { throw RestoreError.aborted }
            try stop()
            for disk in disks where !disk.writesAside { try write(disk, from: stored(disk)) }
            t0 = Date()
            for disk in disks {
                try disk.swapIn()
                swapped.append(disk)
            }
            log.info("disks swapped in", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
            try define()
        } catch {
            rollBack(swapped)
            throw error
        }
        let t0 = Date()
        for disk in disks {
            if let note = disk.finish() { log.warning("\(note)", metadata: ["disk": "\(disk.target)"]) }
        }
        log.info("replaced disks removed", metadata: ["seconds": "\(StepClock.seconds(since: t0))"])
    }

    /// A device written in place, with the VM stopped: never cut once started (DeviceRestore).
    private func write(_ disk: any DiskRestore, from stored: String) throws {
        let t0 = Date()
        try disk.write(from: stored, abort: nil)
        log.info(
            "disk written and checked",
            metadata: ["disk": "\(disk.target)", "path": "\(disk.path)", "seconds": "\(StepClock.seconds(since: t0))"])
    }

    /// Swaps back in reverse order, then removes what was written. A disk that cannot be swapped back
    /// keeps what was written too: the error names where its old content is.
    private func rollBack(_ swapped: [any DiskRestore]) {
        var stuck: Set<String> = []
        for disk in swapped.reversed() {
            do { try disk.swapBack() } catch {
                stuck.insert(disk.target)
                log.error(
                    "\(disk.target) could not be put back as it was: \(error)", metadata: ["path": "\(disk.path)"])
            }
        }
        for disk in disks where !stuck.contains(disk.target) {
            do { try disk.discard() } catch {
                log.error("what was written for \(disk.target) could not be removed: \(error)")
            }
        }
    }
}
