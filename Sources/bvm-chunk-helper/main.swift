// bvm-chunk-helper: the part of backup_vm that runs on a hypervisor for the chunk store
// (Store=chunks). The server copies it into WorkPath and checks its SHA-256 before every use.
// It reads one disk's content, hashes it in 4 MiB chunks and sends only the chunks the server lacks
// (docs/chunk-store.md: the protocol). No Foundation: it is linked statically and kept small.
//
//   bvm-chunk-helper send [--source PATH | --source-fd N] [--level N]
//       frames to stdout, the server's answers on stdin; the disk from PATH or fd N (default fd 3)
//   bvm-chunk-helper version
import ChunkWire

#if canImport(Glibc)
    import Glibc
#endif

func fail(_ message: String, code: Int32) -> Never {
    let line = "bvm-chunk-helper: " + message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(code)
}

let usage = "usage: bvm-chunk-helper send [--source PATH | --source-fd N] [--level N] | version"
var args = Array(CommandLine.arguments.dropFirst())
guard let verb = args.first else { fail(usage, code: 64) }
args.removeFirst()

switch verb {
case "version":
    print("bvm-chunk-helper protocol \(ChunkFormat.protocolVersion) chunk-size \(ChunkFormat.chunkSize)")
case "send":
    var sourceFD: Int32 = 3
    var level = ChunkFormat.defaultLevel
    var i = 0
    while i < args.count {
        let option = args[i]
        guard i + 1 < args.count else { fail("\(option) needs a value; " + usage, code: 64) }
        let value = args[i + 1]
        switch option {
        case "--source":
            let fd = open(value, O_RDONLY | O_CLOEXEC)
            if fd < 0 { fail("cannot open \(value): \(String(cString: strerror(errno)))", code: 1) }
            sourceFD = fd
        case "--source-fd":
            guard let fd = Int32(value), fd >= 0 else {
                fail("--source-fd: expected a file descriptor, got \(value)", code: 64)
            }
            sourceFD = fd
        case "--level":
            guard let l = Int32(value), (-7...19).contains(l) else {
                fail("--level: expected -7...19, got \(value)", code: 64)
            }
            level = l
        default:
            fail("unknown option \(option); " + usage, code: 64)
        }
        i += 2
    }
    // A server that goes away must end us with an error, not a signal nobody reports.
    signal(SIGPIPE, SIG_IGN)
    // 1 MiB pipes (F_SETPIPE_SZ; nothing happens for a file or device): a chunk crosses in 4 reads,
    // not 64, from nbdcopy and into ssh.
    _ = fcntl(sourceFD, 1031, Int32(1 << 20))
    _ = fcntl(1, 1031, Int32(1 << 20))
    do {
        let totals = try ChunkSender(source: sourceFD, answers: 0, output: 1, level: level).run()
        let line =
            "bvm-chunk-helper: \(totals.bytes) bytes, \(totals.chunks) chunks, \(totals.zeroChunks) zero, "
            + "\(totals.sentChunks) sent (\(totals.sentBytes) bytes compressed)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    } catch {
        fail("\(error)", code: 1)
    }
default:
    fail("unknown command \(verb); " + usage, code: 64)
}
