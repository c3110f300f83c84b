import ChunkWire
import Foundation
import Testing

@testable import BackupVMCore

/// The chunked transfer as a job runs it, on a stand-in hypervisor (SandboxHost: the remote script runs
/// here under bash): the helper copied on first use and checked before every use, and hostile helpers
/// (any program the hypervisor runs under that name) that lie about a chunk, stop mid-frame, send
/// garbage or a short disk. Each fails with a reason and leaves nothing in the store.
@Suite(.tags(.spool), .serialized)
struct ChunkStreamTests {
    let dir = TempDir("chunkstream")
    var store: ChunkStore { ChunkStore(storage: dir.path + "/storage") }
    let chunk = ChunkFormat.chunkSize

    func sandbox() throws -> SandboxHost { try SandboxHost(dir) }

    /// A 2½-chunk disk in the sandbox.
    func disk(_ sandbox: SandboxHost) -> (path: String, content: [UInt8]) {
        let content =
            ChunkTestData.random(chunk, seed: 1) + ChunkTestData.text(chunk, seed: 2)
            + ChunkTestData.random(chunk / 2, seed: 3)
        let path = sandbox.sandbox + "/disk.raw"
        ChunkTestData.write(content, to: path)
        return (path, content)
    }

    func send(_ sandbox: SandboxHost, helper: ChunkHelper, source: String, job: String = "j") throws -> ChunkReceipt {
        let staging = try store.staging(for: job)
        do {
            let r = try ChunkStream(host: sandbox.host, helper: helper, workPath: sandbox.sandbox + "/work").send(
                .path(source), scratch: sandbox.sandbox + "/work/vm/.x.partial", into: staging, abort: AbortFlag())
            try staging.commit()
            staging.release()
            return r
        } catch {
            staging.discard()
            throw error
        }
    }

    var realHelper: ChunkHelper { get throws { try ChunkHelper.load(path: Paths.binary("bvm-chunk-helper")) } }

    @Test func theHelperIsCopiedOnFirstUseAndReplacedWhenDamaged() throws {
        let s = try sandbox()
        let (path, content) = disk(s)
        let helper = try realHelper
        let remote = helper.remotePath(workPath: s.sandbox + "/work")
        #expect(!FileManager.default.fileExists(atPath: remote))
        let r = try send(s, helper: helper, source: path)
        #expect(try FileDigest.sha256(ofFile: remote).digest == helper.sha256)
        #expect(try ChunkTestData.reassemble(r.index, store: store) == content)
        // Damaged on the hypervisor: never run, copied again.
        var bytes = try #require(FileManager.default.contents(atPath: remote))
        bytes[5000] ^= 1
        try bytes.write(to: URL(fileURLWithPath: remote))
        let again = try send(s, helper: helper, source: path, job: "k")
        #expect(again.newChunks == 0 && again.knownChunks == 3)
        #expect(try FileDigest.sha256(ofFile: remote).digest == helper.sha256)
    }

    @Test func aMissingDiskFailsNamingIt() throws {
        let s = try sandbox()
        #expect {
            try send(s, helper: try realHelper, source: s.sandbox + "/no-such-disk")
        } throws: { "\($0)".contains("no-such-disk") }
        #expect(ChunkTestData.storedChunks(store).isEmpty)
    }

    /// A "helper" written in Python that speaks the protocol and then misbehaves as `mode` says.
    func hostile(_ mode: String) throws -> ChunkHelper {
        let path = dir.path + "/hostile-\(mode)"
        try SandboxHost.executable(
            path,
            """
            #!/usr/bin/env python3
            import hashlib, os, struct, subprocess, sys, tempfile
            MODE = "\(mode)"
            SIZE = \(chunk)
            out = sys.stdout.buffer
            def frame(tag, payload):
                out.write(tag + struct.pack(">I", len(payload)) + payload); out.flush()
            def zstd(data):
                with tempfile.NamedTemporaryFile() as f:
                    f.write(data); f.flush()
                    return subprocess.run(["zstd", "-q", "-c", f.name], capture_output=True, check=True).stdout
            src = sys.argv[sys.argv.index("--source") + 1]
            disk = open(src, "rb").read()
            if MODE == "garbage":
                out.write(b"Q" + os.urandom(4999)); out.flush(); sys.exit(0)  # never a frame type by chance
            if MODE == "hugeStderr":
                sys.stderr.write("\\x1b[2J" + "x" * 3000000 + "\\n"); sys.exit(1)
            frame(b"H", bytes([1]) + struct.pack(">I", SIZE))
            first = disk[:SIZE]
            if MODE == "hugeFailure":
                frame(b"X", ("\\x1b]0;owned\\x07 line\\n" * 200000).encode()); sys.exit(1)
            if MODE == "short":
                # A whole, valid stream of the first chunk only: the disk is longer.
                frame(b"D", hashlib.sha256(first).digest() + struct.pack(">I", len(first)))
                if sys.stdin.buffer.read(1) == b"N":
                    frame(b"C", hashlib.sha256(first).digest() + zstd(first))
                frame(b"E", struct.pack(">QQ", len(first), 1)); sys.exit(0)
            frame(b"D", hashlib.sha256(first).digest() + struct.pack(">I", len(first)))
            sys.stdin.buffer.read(1)
            lie = bytes(reversed(first))
            whole = b"C" + struct.pack(">I", 32 + len(zstd(lie))) + hashlib.sha256(first).digest() + zstd(lie)
            if MODE == "mismatch":
                out.write(whole); out.flush()
                frame(b"E", struct.pack(">QQ", len(first), 1))
            elif MODE == "truncated":
                out.write(whole[: len(whole) // 2]); out.flush()
            sys.exit(0)
            """)
        return try ChunkHelper.load(path: path)
    }

    @Test(arguments: [
        ("mismatch", "does not match its digest"), ("truncated", "ended inside a frame's payload"),
        ("garbage", "unknown frame type"), ("short", "sent \(4 * 1024 * 1024) bytes of a disk of"),
    ])
    func aHostileHelperFailsTheTransferAndStoresNothing(mode: String, reason: String) throws {
        let s = try sandbox()
        let (path, _) = disk(s)
        #expect {
            try send(s, helper: try hostile(mode), source: path)
        } throws: { error in
            "\(error)".contains(reason)
        }
        #expect(ChunkTestData.storedChunks(store).isEmpty, "nothing of a hostile helper's is in the store")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: store.root + "/.staging")) ?? [] == [])
    }

    /// Issue #19 item 12: what a helper says (a failure frame of megabytes, a last stderr line of
    /// megabytes with escape sequences) reaches the job's reason as one short line.
    @Test(arguments: ["hugeFailure", "hugeStderr"])
    func aHelperThatSaysMegabytesIsToldInOneShortLine(mode: String) throws {
        let s = try sandbox()
        let (path, _) = disk(s)
        #expect {
            try send(s, helper: try hostile(mode), source: path)
        } throws: { error in
            let text = "\(error)"
            return text.utf8.count < 1000 && !text.unicodeScalars.contains { $0.value < 32 || $0.value == 127 }
        }
    }
}
