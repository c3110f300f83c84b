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
        let big = Array(repeating: UInt8(ascii: "#"), count: JobFile.maxSize + 1)
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
