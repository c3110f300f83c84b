import Foundation
import Testing

@testable import BackupVMCore

/// Issue #19 item 11: a hostile helper stream could exhaust the server's memory (zero frames cost 9
/// bytes on the wire and an index entry each; digests that are never sent grew the list of chunks
/// asked for; totals were checked only at the end). The real `backup_vm run` backs up a VM of a
/// stand-in host (StandInFleet) whose "helper" sends three million frames; the job is refused at once
/// and the process's peak RSS (GNU time) stays under 64 MiB.
@Suite(.tags(.spool), .serialized)
struct ChunkMemoryTests {
    enum Flood: String, CaseIterable {
        /// Zero frames of a whole chunk each, far past the disk's size.
        case zeros
        /// Distinct digests, each answered `need`, none of them ever sent.
        case digests
    }

    /// A "helper" that says hello and then sends three million frames as fast as it can (it drains our
    /// answers on a thread of its own, so the flood never waits for us).
    func floodingHelper(_ dir: TempDir, _ flood: Flood) throws -> String {
        let path = dir.path + "/flooding-helper"
        try SandboxHost.executable(
            path,
            """
            #!/usr/bin/env python3
            import struct, sys, threading
            def drain():
                while sys.stdin.buffer.read(65536): pass
            threading.Thread(target=drain, daemon=True).start()
            out = sys.stdout.buffer
            out.write(b"H" + struct.pack(">I", 5) + bytes([1]) + struct.pack(">I", 4194304))
            try:
                for batch in range(30):
                    frames = []
                    for i in range(100000):
                        if "\(flood.rawValue)" == "zeros":
                            frames.append(b"Z" + struct.pack(">II", 4, 4194304))
                        else:
                            n = batch * 100000 + i
                            frames.append(b"D" + struct.pack(">I", 36) + struct.pack(">Q", n) * 4 + struct.pack(">I", 4194304))
                    out.write(b"".join(frames)); out.flush()
            except BrokenPipeError:
                sys.exit(0)
            """)
        return path
    }

    @Test(arguments: Flood.allCases)
    func aFloodOfFramesIsRefusedAtOnceInBoundedMemory(_ flood: Flood) throws {
        let fleet = try StandInFleet(vms: [("vm1", "kvm1")])
        let helper = try floodingHelper(fleet.dir, flood)
        let conf = fleet.configDir + "/backup_vm.d/backup_vm.conf"
        let text = try String(contentsOfFile: conf, encoding: .utf8)
        try (text + "Store=chunks\nChunkHelper=\(helper)\n").write(toFile: conf, atomically: true, encoding: .utf8)
        // A 64 GiB disk (sparse): 16,384 chunks is what its size allows.
        #expect(truncate(fleet.dir.path + "/disks/vm1.raw", 64 << 30) == 0)
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let r = try runTool(
            "/usr/bin/time",
            ["-f", "BVM_MAXRSS_KB %M", Paths.binary("backup_vm"), "run", "vm1", "--config-dir", fleet.configDir],
            environment: ["PATH": fleet.dir.path + "/bin:" + path], timeout: 300)
        #expect(r.status == 1, "the job fails: \(r.err)")
        let expected = flood == .zeros ? "more than the disk's 68719476736 bytes" : "more than 64 chunks asked for"
        #expect(r.err.contains(expected), "\(r.err)")
        let line = r.err.split(separator: "\n").last { $0.hasPrefix("BVM_MAXRSS_KB ") }
        let kib = try #require(line.flatMap { Int($0.split(separator: " ")[1]) }, "\(r.err)")
        print("ChunkMemoryTests \(flood): peak RSS \(kib) KiB")
        #expect(kib < 64 * 1024, "peak RSS \(kib) KiB")
        #expect(fleet.backups(of: "vm1").isEmpty)
    }
}
