import Foundation
import Testing

@testable import BackupVMCore

@Suite("job files", .tags(.unit))
struct JobFileTests {
    @Test func oneLineJobIsValid() throws {
        let job = try JobFile.parse(Array("vm=web01".utf8))
        #expect(job.request.vm == "web01")
        #expect(job.recoveries == 0 && job.resultStatus == nil)
    }

    @Test func fullJobWithResult() throws {
        var text = JobRequest(vm: "db01", requestedBy: "op", created: "2026-11-27T10:00:00Z").serialized()
        text += "recovered=2026-11-27T10:05:00Z cleanup\n"
        text += JobResult(status: .failed, reason: "line one\nline two", host: "kvm1", workerPID: 42).serialized()
        let job = try JobFile.parse(Array(text.utf8))
        #expect(job.request == JobRequest(vm: "db01", requestedBy: "op", created: "2026-11-27T10:00:00Z"))
        #expect(job.recoveries == 1)
        #expect(job.resultStatus == .failed)
        #expect(job.resultFields["reason"] == "line one line two")
        #expect(job.resultFields["host"] == "kvm1")
    }

    @Test(arguments: [
        ("", "no vm= line"),
        ("hello world", "line 1: 'hello world': expected key=value"),
        ("vm=../etc", "expected a VM name"),
        ("vm=a b", "expected a VM name"),
        ("vm=x\nhost=evil", "unknown key 'host'"),
        ("vm=x\nvm=y", "appears twice"),
        ("vm=x\0", "not UTF-8 text"),
    ])
    func badJobsSayWhy(_ text: String, _ expected: String) {
        #expect {
            _ = try JobFile.parse(Array(text.utf8))
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func binaryGarbage() {
        let garbage: [UInt8] = [0xff, 0xfe, 0x00, 0x12, 0x80]
        #expect(throws: JobFile.ParseError.self) { _ = try JobFile.parse(garbage) }
    }

    @Test func oversizedJob() {
        let big = Array(repeating: UInt8(ascii: "#"), count: JobFile.maxRecordSize + 1)
        #expect { _ = try JobFile.parse(big) } throws: { "\($0)".contains("small text file") }
    }

    @Test func compactTimestampsRoundTrip() throws {
        let date = Date(timeIntervalSince1970: 1_795_000_000)
        let s = Timestamps.compact(date)
        #expect(s.count == 16)
        #expect(Timestamps.parseCompact(Substring(s)) == date)
        #expect(Timestamps.parseCompact("20261127T2215Z") == nil)
    }
}

@Suite("POSIX cksum", .tags(.unit))
struct POSIXChecksumTests {
    @Test(arguments: [0, 1, 7, 8, 9, 1000, 65537])
    func matchesCoreutilsCksum(_ size: Int) throws {
        var bytes = [UInt8](repeating: 0, count: size)
        var x: UInt32 = 12345
        for i in 0..<size {
            x = x &* 1_103_515_245 &+ 12345
            bytes[i] = UInt8(truncatingIfNeeded: x >> 16)
        }
        let dir = TempDir("cksum")
        let path = dir.path + "/data"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let r = try runTool("/usr/bin/cksum", [path])
        let expected = r.out.split(separator: " ").map(String.init)
        var c = POSIXChecksum()
        // Uneven chunks: the state carries across updates.
        var offset = 0
        for chunk in [3, 5, 4096, Int.max] where offset < size {
            let end = min(size, chunk == Int.max ? size : offset + chunk)
            c.update(Array(bytes[offset..<end]))
            offset = end
        }
        #expect(String(c.finalize()) == expected[0])
        #expect(String(c.count) == expected[1])
    }
}
