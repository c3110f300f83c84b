/// What a restore test's copy needs of its host, and the check against what the host has (asked in
/// one round trip with the making of its directory: RestoreTestCopy.prepare).
///
/// Memory: the copy may use its whole <memory> (the larger of <memory> and <currentMemory>), and
/// qemu needs some of its own beside it: the host's MemAvailable must hold that plus 10% and 256 MiB.
/// The copy keeps no hugepages, locked or file-backed memory (RestoreTestDomain drops memoryBacking),
/// so MemAvailable is all that counts: a test never takes the hugepages reserved for the host's VMs.
///
/// Files: the kernel, initrd and firmware the copy reads (DomainXML.filesReadByCopy) must be regular
/// files that every user of the host may read (checked as `nobody`): libvirt hands them to qemu, so a
/// hypervisor's XML naming a root-only file (a key, /etc/shadow) would put it into the copy's memory.
struct RestoreTestNeeds {
    let disks: [Manifest.StoredImage]
    let memory: Int64
    var inputs: [String] = []

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

    /// The question for the host, after the directory is made: the free space there, MemAvailable,
    /// and which of the inputs not everyone may read (a line each, by index).
    func probe(directory: String) -> String {
        let d = ShellQuote.quote(directory)
        var script =
            "df -P -k \(d) | awk 'NR==2 {print \"disk \" $4}'; "
            + "awk '$1 == \"MemAvailable:\" {print \"memory \" $2}' /proc/meminfo"
        for (i, file) in inputs.enumerated() {
            let q = ShellQuote.quote(file)
            script += "; { [ -f \(q) ] && runuser -u nobody -- test -r \(q); } || echo 'unreadable \(i)'"
        }
        return script
    }

    /// What the host answered: free KiB in the directory's file system, MemAvailable in KiB, the
    /// inputs (by index) not everyone may read.
    struct HostRoom {
        var diskKiB: Int64?
        var memoryKiB: Int64?
        var unreadable: [Int] = []

        init(diskKiB: Int64?, memoryKiB: Int64?) {
            self.diskKiB = diskKiB
            self.memoryKiB = memoryKiB
        }

        /// Lines `disk N`, `memory N` and `unreadable I`; a missing or garbled size stays nil (and
        /// is refused).
        init(parsing out: String) {
            for line in out.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count == 2, let n = Int64(f[1]), n >= 0 else { continue }
                if f[0] == "disk" { diskKiB = n }
                if f[0] == "memory" { memoryKiB = n }
                if f[0] == "unreadable", let i = Int(exactly: n) { unreadable.append(i) }
            }
        }
    }

    func check(_ room: HostRoom, host: String, directory: String) throws {
        if let i = room.unreadable.first {
            let file = inputs.indices.contains(i) ? inputs[i] : "input \(i)"
            throw RestoreTestFailure(
                "the copy would read \(file) on \(host) (its kernel, initrd or firmware), which is not a file every"
                    + " user there may read; a restore test's copy reads only such files, so that a domain's XML"
                    + " cannot make it read others")
        }
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
