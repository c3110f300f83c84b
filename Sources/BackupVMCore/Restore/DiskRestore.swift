/// One disk on its way back. It is written where nothing of the VM's is (a new LV beside the LV, a
/// file beside the file), while the VM may still run; checked on the way; swapped in only when every
/// disk is written and the VM is stopped; and until `finish` every step can be undone, so a stream
/// that breaks off or does not check out leaves every disk as it was. The exception is a block
/// device that is not an LV: there is nowhere beside it, so it is written in place, after the VM is
/// stopped and only once everything else is written (its size checked before anything is touched).
protocol DiskRestore: Sendable {
    /// The disk's entry in the manifest.
    var image: Manifest.StoredImage { get }
    /// The guest's device (vda).
    var target: String { get }
    /// The disk's path in the domain after the restore.
    var path: String { get }
    /// Written beside the disk before the VM is stopped; false: in place, after it is stopped.
    var writesAside: Bool { get }

    /// Streams the stored image and checks it; on any failure it leaves nothing of its own behind.
    /// `abort` ends the stream at once (nil: it runs to its end).
    func write(from stored: String, abort: AbortFlag?) throws
    /// Puts what `write` made in place of the disk, keeping the disk it replaces.
    func swapIn() throws
    /// Undoes `swapIn`.
    func swapBack() throws
    /// Removes what `write` made (nothing when it is gone).
    func discard() throws
    /// Once the domain is defined: removes the disk it replaced. Returns what stays, for the operator.
    func finish() -> String?
}
