import Foundation
import Logging

/// Writes the disks of a restore that go beside their own, up to `width` at once, each stream on a
/// thread of its own: one stream leaves most of a hypervisor's cores and disks idle, and a VM's disks
/// are independent. Bounded, because every stream costs the hypervisor a decompressor and a writer,
/// and many at once on one disk array only seek.
///
/// The first failure cuts the streams still running (their abort flag follows the restore's own) and
/// starts no more; the caller then removes everything written, as after a failure of a single stream.
/// The error told is the first one, not the cuts it caused. A raised `abort` ends it the same way.
struct DiskWrites {
    let width: Int
    let abort: AbortFlag
    let log: Logger

    func run(_ writes: [(disk: any DiskRestore, stored: String)]) throws {
        let cut = AbortFlag(following: abort)
        let log = self.log
        let items = writes.map { DiskWrite(disk: $0.disk, stored: $0.stored) }
        let writeOne: @Sendable (DiskWrite) throws -> Void = { write in
            let t0 = Date()
            try write.disk.write(from: write.stored, abort: cut)
            log.info(
                "disk written and checked",
                metadata: [
                    "disk": "\(write.disk.target)", "path": "\(write.disk.path)",
                    "seconds": "\(StepClock.seconds(since: t0))",
                ])
        }
        try BoundedThreads.forEach(items, width: width, stop: cut, onFirstFailure: { cut.raise() }, writeOne)
        guard !abort.isRaised else { throw RestoreError.aborted }
    }
}

/// One disk and the stored image it is written from.
private struct DiskWrite: Sendable {
    let disk: any DiskRestore
    let stored: String
}

/// Seconds for the step lines of a restore's log (one decimal): each step says how long it took, so
/// a slow one is named by the log itself.
enum StepClock {
    static func seconds(since start: Date) -> String { String(format: "%.1f", Date().timeIntervalSince(start)) }
}
