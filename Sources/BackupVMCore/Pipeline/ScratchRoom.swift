import Foundation

/// Room for a live backup job's scratch files (`WorkPath/VM/.ID.live/TARGET.scratch`, qcow2 files
/// that qemu's copy-before-write fills with a disk's old blocks as the guest overwrites them).
/// When their file system fills, qemu fails the guest's write (`on-cbw-error=break-guest-write`,
/// libvirt 9.0's only choice) and the default error policy pauses the VM (`paused (I/O error)`).
///
/// What a job may need, measured on the lab (libvirt 9.0, QEMU 7.2, docs/live-backup-spike.md §6):
/// a guest that overwrote every block of a 64 MiB raw disk with 48.3 MiB allocated and of a 32 MiB
/// qcow2 with 24.3 MiB allocated grew their scratch files to 48.3 and 24.3 MiB; a hole or an
/// unallocated cluster costs nothing (its old content is zeros). So the worst case of one disk is
/// its allocated size (capped at its virtual size; an LV counts whole) plus the scratch's own
/// metadata: 1 MiB, and 1/4096 of the virtual size for its L2 and refcount tables (they take about
/// 1/6500 with 64 KiB clusters). A job begins only if its file system has that for every disk, plus
/// what the other live jobs under the same WorkPath may still need, plus `margin`; while the copy
/// runs, `ScratchWatch` ends it when the room left beyond what the jobs may still need falls under
/// `floor` (someone else filled the file system).
enum ScratchRoom {
    /// Free space a job needs beyond the worst case of every live job under its WorkPath.
    static let margin: Int64 = 128 << 20
    /// The watch ends the job when the free space beyond that worst case falls under this.
    static let floor: Int64 = 64 << 20
    /// Each job writes its worst case into this file in its directory, for the others' checks.
    static let reservationFile = "need"

    /// Shell: sets `$need` to the worst case of these disks (bytes), failing the script with a
    /// message when a size cannot be read. The paths are validated disk sources, quoted.
    static func needScript(_ disks: [DomainDisk]) -> String {
        let perDisk = disks.map { disk -> String in
            let q = ShellQuote.quote(disk.source)
            let sizes: String
            switch (disk.kind, disk.format) {
            case (.block, _):
                sizes = "da=$(blockdev --getsize64 \(q)); dv=$da"
            case (.file, .raw):
                sizes = "dx=$(stat -L -c '%b %B %s' \(q)); read -r b1 b2 dv <<< \"$dx\"; da=$((b1 * b2))"
            case (.file, .qcow2):
                // The virtual size is the qcow2 header's `size` (8 bytes big-endian at offset 24).
                sizes =
                    "dx=$(stat -L -c '%b %B' \(q)); read -r b1 b2 <<< \"$dx\"; da=$((b1 * b2)); "
                    + "dv=$(od -An -tu8 --endian=big -j24 -N8 \(q) | tr -d ' ')"
            }
            return """
                \(sizes); case "$da,$dv" in ,*|*,|*[!0-9,]*) echo "cannot read the size of \(q)" >&2; exit 3;; esac; \
                [ "${#dv}" -le 18 ] && [ "${#da}" -le 18 ] || { echo "implausible size of \(q): $dv" >&2; exit 3; }; \
                [ "$da" -le "$dv" ] || da=$dv; need=$((need + da + dv / 4096 + 1048576))
                """
        }
        return (["need=0"] + perDisk).joined(separator: "; ")
    }

    /// Shell: sets `$others` to what the live jobs of ours under WorkPath (`$w`) may still put into
    /// their scratch (each one's reservation minus what its directory holds), skipping `$d` when
    /// `skipOwn`. A reservation that is not a plain number is skipped (the directories belong to the
    /// qemu user).
    static func outstandingScript(skipOwn: Bool) -> String {
        """
        others=0; for lx in "$w"/*/.*.live; do \(skipOwn ? "[ \"$lx\" != \"$d\" ] || continue; " : "")\
        [ -f "$lx/\(reservationFile)" ] || continue; ln=$(head -c 20 "$lx/\(reservationFile)"); \
        case "$ln" in ''|*[!0-9]*) continue;; esac; [ "${#ln}" -le 18 ] || continue; \
        lu=$(du -s -B1 "$lx" | cut -f1); [ "$ln" -le "$lu" ] || others=$((others + ln - lu)); done
        """
    }

    /// Shell: sets `$avail` to the bytes an unprivileged user (qemu) may still write on the file
    /// system of `$d` (df's Available: ext4's reserved blocks are root's only); fails when unread.
    static let availableScript = """
        x=$(df -P -B1 "$d" | tail -n 1); read -r _ _ _ avail _ <<< "$x"; \
        case "$avail" in ''|*[!0-9]*) echo "cannot read the free space of $d (df: $x)" >&2; exit 3;; esac
        """
}

/// The live job's scratch space and the domain, read while the job runs (one round trip).
public struct ScratchReading: Sendable, Equatable {
    /// Bytes that qemu may still write on the file system of the job's directory.
    public var available: Int64
    /// What the live jobs of ours under the same WorkPath (this one included) may still need.
    public var outstanding: Int64
    /// What this job's directory holds now.
    public var used: Int64
    public var condition: DomainCondition?

    public init(available: Int64, outstanding: Int64, used: Int64, condition: DomainCondition?) {
        self.available = available
        self.outstanding = outstanding
        self.used = used
        self.condition = condition
    }

    /// What the watch makes of a reading.
    public enum Verdict: Sendable, Equatable {
        case fine
        /// The file system may fill before the copy ends: end the job now.
        case low
        /// qemu paused the guest on a failed write: end the job, resume the guest.
        case paused(DomainCondition)
    }

    public var verdict: Verdict {
        if let condition, condition.pausedByIOError { return .paused(condition) }
        return available - outstanding < ScratchRoom.floor ? .low : .fine
    }
}
