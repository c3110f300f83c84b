import Foundation
import Logging

/// The order of a restore that keeps every disk as it was until all new ones are complete: first
/// every disk is written beside its own (new LVs, files beside the files) while the VM may still run;
/// then the VM is stopped (only now, when nothing can fail for want of a good image or of room);
/// then devices that are not LVs are written in place; then every disk is swapped in and the domain
/// defined. A failure anywhere before that end swaps back what was swapped and removes what was
/// written; only then are the replaced disks removed.
struct RestoreTransaction {
    let disks: [any DiskRestore]
    let abort: AbortFlag
    let log: Logger

    /// `stop` stops the VM (or refuses); `define` defines the domain once every disk is in place.
    func run(from stored: (any DiskRestore) -> String, stop: () throws -> Void, define: () throws -> Void) throws {
        var swapped: [any DiskRestore] = []
        do {
            for disk in disks where disk.writesAside {
                guard !abort.isRaised else { throw RestoreError.aborted }
                try write(disk, from: stored(disk), abort: abort)
            }
            guard !abort.isRaised else { throw RestoreError.aborted }
            try stop()
            for disk in disks where !disk.writesAside { try write(disk, from: stored(disk), abort: nil) }
            for disk in disks {
                try disk.swapIn()
                swapped.append(disk)
            }
            try define()
        } catch {
            rollBack(swapped)
            throw error
        }
        for disk in disks {
            if let note = disk.finish() { log.warning("\(note)", metadata: ["disk": "\(disk.target)"]) }
        }
    }

    private func write(_ disk: any DiskRestore, from stored: String, abort: AbortFlag?) throws {
        let t0 = Date()
        try disk.write(from: stored, abort: abort)
        log.info(
            "disk written and checked",
            metadata: [
                "disk": "\(disk.target)", "path": "\(disk.path)",
                "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(t0)))",
            ])
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
