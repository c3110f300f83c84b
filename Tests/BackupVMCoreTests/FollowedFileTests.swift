import Crypto
import Foundation
import Testing

@testable import BackupVMCore

/// The transfer's file follower against a real writer process: it must read exactly what the
/// writer wrote, across pauses, bursts and the writer's exit, and stop the writer on abort.
@Suite("followed file: reading a file behind the process that writes it", .tags(.spool))
struct FollowedFileTests {
    let tmp = TempDir("follow")

    @Test("every byte, in order, across pauses and bursts, until the writer has exited")
    func readsEverything() throws {
        let path = tmp.path + "/out"
        let file = try FollowedFile(creating: path, window: 1 << 20)  // small windows: writeback runs often
        // 3 bursts of random data with pauses (the reader catches up and waits), then an exit.
        let writer = try SpawnedProcess(
            [
                "/bin/sh", "-c",
                "head -c 3000000 /dev/urandom; sleep 0.3; head -c 5000001 /dev/urandom; sleep 0.2; head -c 7 /dev/urandom; echo done >&2",
            ],
            stdin: nil, stdout: file.writeFD)
        var sha = SHA256()
        var total = 0
        try file.follow(writer, limits: .none) { chunk in
            sha.update(bufferPointer: chunk)
            total += chunk.count
        }
        #expect(writer.wait() == 0)
        #expect(writer.stderr == "done\n")
        try file.finish()
        #expect(total == 8_000_008 && file.readOffset == 8_000_008)
        let written = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(written.count == total)
        #expect(Data(sha.finalize()) == Data(SHA256.hash(data: written)), "what was hashed is what is on disk")
    }

    @Test("abort stops the writer and throws")
    func abortStopsWriter() throws {
        let file = try FollowedFile(creating: tmp.path + "/out")
        let writer = try SpawnedProcess(["/bin/sh", "-c", "exec sleep 30"], stdin: nil, stdout: file.writeFD)
        let abort = AbortFlag()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { abort.raise() }
        #expect(throws: ProcessError.self) { try file.follow(writer, limits: CommandLimits(abort: abort)) { _ in } }
        #expect(writer.poll() == 128 + SIGTERM, "the writer was terminated (not waited for) and reaped")
    }
}
