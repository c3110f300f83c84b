import Foundation
import Testing

@testable import BackupVMCore

/// Several real worker processes (SpoolTestWorker: the real WorkerPool, Spool, SlotLocks and
/// OrphanRecovery with a scripted job step) on one spool.
@Suite("spool with worker processes", .tags(.spool), .serialized)
struct SpoolStressTests {
    let dir = TempDir("stress")
    var spoolPath: String { dir.path + "/spool" }
    var eventsPath: String { dir.path + "/events" }
    var hostsPath: String { dir.path + "/hosts" }
    var spool: Spool { Spool(root: spoolPath) }

    func writeHosts(_ pairs: [(String, String)]) {
        dir.write("hosts", pairs.map { "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n")
    }

    func worker(_ extra: [String] = [], maxGlobal: Int = 3, maxHost: Int = 2) throws -> ChildProcess {
        try ChildProcess(
            Paths.binary("SpoolTestWorker"),
            [
                "--spool", spoolPath, "--events", eventsPath, "--hosts", hostsPath,
                "--max-global", "\(maxGlobal)", "--max-host", "\(maxHost)", "--rescan", "1",
            ] + extra)
    }

    /// Which folders hold each job name.
    func folders() -> [String: [JobState]] {
        var states: [String: [JobState]] = [:]
        for state in JobState.allCases {
            for name in spool.names(in: state) { states[name, default: []].append(state) }
        }
        return states
    }

    @Test("2,000 jobs, 4 workers and a producer: each claimed once, none lost, limits held")
    func twoThousandJobs() throws {
        let hosts = ["kvm1", "kvm2", "kvm3", "kvm4"]
        let vms = (0..<2000).map { (String(format: "vm%04d", $0), hosts[$0 % 4]) }
        writeHosts(vms)
        try spool.prepare()
        let workers = try (0..<4).map { _ in try worker(["--delay-ms", "1"]) }
        defer { for w in workers { w.stop() } }
        let producer = try ChildProcess(
            Paths.binary("SpoolTestWorker"),
            ["--produce", "--spool", spoolPath, "--hosts", hostsPath])
        #expect(producer.wait(timeout: 300), "producer finished")
        #expect(producer.process.terminationStatus == 0, "\(producer.standardError)")
        let produced = Set(producer.standardOutput.split(separator: "\n").map(String.init))
        #expect(produced.count == 2000)

        let finished = eventually(timeout: 600) {
            spool.names(in: .done).count + spool.names(in: .failed).count >= 2000
        }
        #expect(
            finished,
            "done=\(spool.names(in: .done).count) failed=\(spool.names(in: .failed).count) new=\(spool.names(in: .new).count) active=\(spool.names(in: .active).count)"
        )
        for w in workers { w.signal(SIGTERM) }
        for w in workers { #expect(w.wait(timeout: 60), "worker \(w.pid) exits on SIGTERM") }
        for w in workers { #expect(w.process.terminationStatus == 0, "\(w.standardError.prefix(6000))") }

        let location = folders()
        let found = Set(location.keys)
        #expect(
            found == produced,
            "lost: \(produced.subtracting(found).count), unexpected: \(found.subtracting(produced).count)")
        let misplaced = location.filter { $0.value != [.done] }
        let failedRecords = spool.names(in: .failed).prefix(3).map {
            (try? String(contentsOfFile: spool.layout.failed + "/" + $0, encoding: .utf8)) ?? "?"
        }
        #expect(
            misplaced.isEmpty,
            "every job in done/ and no other folder; not so: \(misplaced.prefix(5)); failed: \(failedRecords); workers said: \(workers.map { $0.standardError.suffix(600) })"
        )
        let events = WorkerEvents.read(eventsPath)
        let starts = events.filter { $0.kind == "start" }
        var perJob: [String: Int] = [:]
        for e in starts { perJob[e.job, default: 0] += 1 }
        #expect(perJob.count == 2000)
        #expect(perJob.values.allSatisfy { $0 == 1 }, "each job ran exactly once")
        #expect(Set(starts.map(\.pid)).count >= 2, "work was shared between worker processes")
        let (global, perHost) = WorkerEvents.maxConcurrency(events)
        #expect(global <= 3, "global concurrency \(global)")
        #expect(perHost.values.allSatisfy { $0 <= 2 }, "per-host concurrency \(perHost)")
        #expect(global >= 2, "the test really ran jobs in parallel (\(global))")
    }

    @Test("a worker SIGKILLed mid-job: the next start cleans up and finishes the job")
    func killedWorkerIsRecovered() throws {
        writeHosts([("victim", "kvm1"), ("other", "kvm2")])
        try spool.prepare()
        let first = try worker(["--slow-prefix", "victim", "--slow-ms", "600000"])
        defer { first.stop() }
        let name = try spool.enqueue(JobRequest(vm: "victim"))
        #expect(
            eventually(timeout: 60) { WorkerEvents.read(eventsPath).contains { $0.kind == "start" && $0.job == name } })
        first.signal(SIGKILL)
        #expect(first.wait(timeout: 30))
        #expect(folders()[name] == [.active], "left in active/ by the dead worker")
        #expect(FileLock.isFree(spool.locks.vmLockPath("victim")), "the kernel dropped its locks")

        let second = try worker(["--exit-when-idle"])
        defer { second.stop() }
        #expect(second.wait(timeout: 120), "the second worker finishes and exits")
        #expect(folders()[name] == [.done])
        let events = WorkerEvents.read(eventsPath).filter { $0.job == name }.map(\.kind)
        #expect(events == ["start", "recover", "start", "end"], "\(events)")
        let text = try String(contentsOfFile: spool.layout.done + "/" + name, encoding: .utf8)
        #expect(text.contains("recovered=") && text.contains("scripted cleanup") && text.contains("status=done"))
    }

    @Test("slots: never more than N global and M per host; a saturated host does not block others")
    func limitsAndHeadOfLine() throws {
        // Six slow jobs for kvmA queued first, then three quick ones for kvmB.
        let a = (0..<6).map { ("slowA\($0)", "kvmA") }
        let b = (0..<3).map { ("fastB\($0)", "kvmB") }
        writeHosts(a + b)
        try spool.prepare()
        for (vm, _) in a + b {
            try spool.enqueue(JobRequest(vm: vm))
            usleep(2000)  // distinct mtimes: the queue order is the enqueue order
        }
        let args = ["--slow-prefix", "slowA", "--slow-ms", "400", "--delay-ms", "20", "--exit-when-idle"]
        let workers = try (0..<2).map { _ in try worker(args, maxGlobal: 3, maxHost: 2) }
        defer { for w in workers { w.stop() } }
        for w in workers { #expect(w.wait(timeout: 120)) }
        #expect(spool.names(in: .done).count == 9)
        let events = WorkerEvents.read(eventsPath)
        let (global, perHost) = WorkerEvents.maxConcurrency(events)
        #expect(global <= 3, "\(global)")
        #expect((perHost["kvmA"] ?? 0) <= 2 && (perHost["kvmB"] ?? 0) <= 2, "\(perHost)")
        #expect(perHost["kvmA"] == 2, "kvmA was saturated")
        let lastAStart = events.filter { $0.kind == "start" && $0.host == "kvmA" }.map(\.ns).max()!
        let bStarts = events.filter { $0.kind == "start" && $0.host == "kvmB" }.map(\.ns)
        #expect(bStarts.count == 3)
        #expect(bStarts.allSatisfy { $0 < lastAStart }, "kvmB's jobs ran while kvmA's waited")
    }
}
