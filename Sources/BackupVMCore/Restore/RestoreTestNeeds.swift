/// What a restore test's copy needs of its host, and the check against what the host has (asked in
/// one round trip with the making of its directory: RestoreTestCopy.prepare).
///
/// Memory: the copy may use its whole <memory> (the larger of <memory> and <currentMemory>), and
/// qemu needs some of its own beside it: the host's MemAvailable must hold that plus 10% and 256 MiB.
/// The copy keeps no hugepages, locked or file-backed memory (RestoreTestDomain drops memoryBacking),
/// so MemAvailable is all that counts: a test never takes the hugepages reserved for the host's VMs.
struct RestoreTestNeeds {
    let disks: [Manifest.StoredImage]
    let memory: Int64

    /// The disks' files, twice for a qcow2 stored as raw content (its raw file and the qcow2), plus
    /// 5% and 256 MiB.
    var diskBytes: Int64 {
        let need = disks.reduce(Int64(0)) {
            Self.sum($0, Self.sum($1.rawBytes, $1.storedContent == .raw && $1.format == .qcow2 ? $1.rawBytes : 0))
        }
        return Self.sum(need, need / 20, 256 << 20)
    }

    var memoryBytes: Int64 { Self.sum(memory, memory / 10, 256 << 20) }

    /// Sums that stop at Int64.max: a hostile size is refused, never a crash or a wrap to small.
    static func sum(_ values: Int64...) -> Int64 {
        values.reduce(0) { total, value in
            let (s, overflow) = total.addingReportingOverflow(value)
            return overflow ? .max : s
        }
    }

    static func bytes(kiB: Int64) -> Int64 {
        let (b, overflow) = kiB.multipliedReportingOverflow(by: 1024)
        return overflow ? .max : b
    }

    /// What the host answered: free KiB in the directory's file system, MemAvailable in KiB.
    struct HostRoom {
        var diskKiB: Int64?
        var memoryKiB: Int64?

        init(diskKiB: Int64?, memoryKiB: Int64?) {
            self.diskKiB = diskKiB
            self.memoryKiB = memoryKiB
        }

        /// Lines `disk N` and `memory N`; a missing or garbled line stays nil (and is refused).
        init(parsing out: String) {
            for line in out.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count == 2, let n = Int64(f[1]), n >= 0 else { continue }
                if f[0] == "disk" { diskKiB = n }
                if f[0] == "memory" { memoryKiB = n }
            }
        }
    }

    func check(_ room: HostRoom, host: String, directory: String) throws {
        guard let diskKiB = room.diskKiB else {
            throw RestoreTestFailure("cannot read the free space of \(directory) on \(host)")
        }
        guard Self.bytes(kiB: diskKiB) >= diskBytes else {
            throw RestoreTestFailure(
                "not enough room in \(directory) on \(host) for the copy: it needs \(ByteCount(diskBytes)), "
                    + "\(ByteCount(Self.bytes(kiB: diskKiB))) free (WorkPath of the VM's profile)")
        }
        guard let memoryKiB = room.memoryKiB else {
            throw RestoreTestFailure(
                "cannot read MemAvailable in /proc/meminfo on \(host); a copy is started only where its memory is"
                    + " known to fit")
        }
        guard Self.bytes(kiB: memoryKiB) >= memoryBytes else {
            throw RestoreTestFailure(
                "not enough memory on \(host) for the copy: its <memory> is \(ByteCount(memory)), with 10% and 256 MiB"
                    + " for qemu it needs \(ByteCount(memoryBytes)), MemAvailable is \(ByteCount(Self.bytes(kiB: memoryKiB)));"
                    + " test on another host (--host) or when the host has the memory")
        }
    }
}
