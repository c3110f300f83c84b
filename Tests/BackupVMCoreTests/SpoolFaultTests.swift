import CInotifyTools
import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// Issue #9's fault suite, spool part: the real `backup_vmd` (one or two) on a stand-in fleet
/// (StandInFleet: the whole pipeline runs, the hypervisors are this machine). Each test asserts that
/// nothing is lost (every job ends exactly once in done/, none left in new/ or active/), that the
/// limits hold, that the daemons go on serving, and what an operator reads.
@Suite("spool faults: two daemons, inotify overflow", .tags(.spool), .serialized)
struct SpoolFaultTests {
    static func vms(_ prefix: String, _ count: Int) -> [(vm: String, host: String)] {
        (0..<count).map { (vm: String(format: "\(prefix)%02d", $0), host: $0 % 2 == 0 ? "kvm1" : "kvm2") }
    }

    /// Waits until the daemon's inotify watches are in place (it logs that before its first pass).
    func awaitWatching(_ daemon: ChildProcess) throws {
        try #require(
            eventually(timeout: 60) { daemon.standardError.contains("inotify watches new/, done/ and failed/") },
            "the daemon did not start: \(daemon.standardError)")
    }

    func stop(_ daemon: ChildProcess, _ name: String) {
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 60), "the \(name) daemon stops on SIGTERM")
        #expect(daemon.process.terminationStatus == 0, "\(name): \(daemon.standardError.suffix(2000))")
    }

    /// Every job in done/ and in no other folder; each VM's copy ran once and left one backup.
    func expectEachJobDoneOnce(_ fleet: StandInFleet, _ names: [String], vms: [String]) {
        let location = fleet.folders()
        #expect(Set(location.keys) == Set(names), "lost: \(Set(names).subtracting(location.keys))")
        let misplaced = location.filter { $0.value != [.done] }
        let failed = fleet.spool.names(in: .failed).prefix(3).map { fleet.record($0, in: .failed) }
        #expect(misplaced.isEmpty, "not (only) in done/: \(misplaced); failed: \(failed)")
        var starts: [String: Int] = [:]
        for e in fleet.events where e.kind == "start" { starts[e.vm, default: 0] += 1 }
        #expect(starts == Dictionary(uniqueKeysWithValues: vms.map { ($0, 1) }), "copies per VM: \(starts)")
        let backups = vms.filter { fleet.backups(of: $0).count != 1 }
        #expect(backups.isEmpty, "VMs without exactly one committed backup: \(backups)")
    }

    @Test("two daemons on one spool: each job runs once, the limits hold across both, both stop on SIGTERM")
    func twoDaemonsOnOneSpool() throws {
        let vms = Self.vms("vm", 12).map(\.vm)
        let fleet = try StandInFleet(vms: Self.vms("vm", 12), maxGlobal: 3, maxPerHost: 2, copyPauseMs: 50)
        func enqueue(_ range: Range<Int>) throws -> [String] {
            try vms[range].map { try fleet.spool.enqueue(JobRequest(vm: $0)) }
        }
        func done(_ names: [String]) -> Bool { Set(fleet.spool.names(in: .done)).isSuperset(of: names) }
        // Who claims a job is a race between the daemons; the test leaves each only one possible winner
        // where it matters. The first, alone, takes two jobs whose copies wait (one per host).
        let first = try fleet.daemon(tag: 1)
        defer { first.stop() }
        try awaitWatching(first)
        fleet.hold(vms[0])
        fleet.hold(vms[1])
        defer { fleet.release(vms[0]) }
        defer { fleet.release(vms[1]) }
        var names = try enqueue(0..<2)
        try #require(eventually(timeout: 60) { fleet.events.filter { $0.kind == "start" }.count == 2 })
        let second = try fleet.daemon(tag: 2)
        defer { second.stop() }
        try awaitWatching(second)
        // What the operator reads: the second names the spool and the first's pid; the first was alone.
        let notice = "another backup_vmd serves spool \(fleet.spool.layout.root) too (pid \(first.pid))"
        #expect(second.standardError.contains(notice), "\(second.standardError)")
        #expect(!first.standardError.contains("another backup_vmd"))

        // Both daemons compete for the one global slot left, one per host free.
        names += try enqueue(2..<6)
        #expect(eventually(timeout: 60) { done(Array(names[2...])) }, "\(fleet.folders())")
        // The first is asked to stop while its two jobs still run: it claims nothing more, so the
        // second serves the rest, one job at a time next to the first's two (the global limit across
        // both), then with every slot once they end and the first exits.
        first.signal(SIGTERM)
        try #require(eventually(timeout: 60) { first.standardError.contains("claiming no new jobs, 2 running") })
        names += try enqueue(6..<12)
        #expect(eventually(timeout: 60) { fleet.events.contains { $0.kind == "start" && $0.pid == 2 } })
        fleet.release(vms[0])
        fleet.release(vms[1])
        #expect(first.wait(timeout: 60), "the first daemon stops on SIGTERM once its jobs are done")
        #expect(first.process.terminationStatus == 0, "\(first.standardError.suffix(2000))")
        #expect(eventually(timeout: 60) { done(names) }, "\(fleet.folders()); \(second.standardError.suffix(2000))")
        stop(second, "second")

        expectEachJobDoneOnce(fleet, names, vms: vms)
        let ranBy = Dictionary(grouping: fleet.events.filter { $0.kind == "start" }, by: \.pid).mapValues {
            Set($0.map(\.vm))
        }
        let byFirst = ranBy[1] ?? []
        #expect(byFirst.isSuperset(of: vms[0..<2]) && byFirst.isDisjoint(with: vms[6..<12]), "\(byFirst)")
        #expect(ranBy[2]?.isSuperset(of: vms[6..<12]) == true, "the second served what came after")
        let (global, perHost) = WorkerEvents.maxConcurrency(fleet.events)
        #expect(global == 3, "at most MaxBackupThreads=3 across both daemons, and reached: \(global)")
        #expect(perHost.values.allSatisfy { $0 <= 2 }, "MaxBackupThreadsForHost=2 across both daemons: \(perHost)")
    }

    @Test("a job running in one daemon is never taken for abandoned by another; real orphans are recovered once")
    func liveJobIsNotAnOrphan() throws {
        let orphanVMs = Self.vms("orphan", 4)
        let fleet = try StandInFleet(vms: [("busy01", "kvm1")] + orphanVMs)
        fleet.hold("busy01")
        defer { fleet.release("busy01") }
        let first = try fleet.daemon(tag: 1)
        defer { first.stop() }
        try awaitWatching(first)
        let busy = try fleet.spool.enqueue(JobRequest(vm: "busy01"))
        try #require(eventually(timeout: 60) { fleet.events.contains { $0.kind == "start" && $0.vm == "busy01" } })

        // Left by workers that died: in active/, their locks free. The second daemon's start-up
        // recovery looks at every job in active/, the first's live one included, and requeues each
        // orphan after its cleanup, which the first daemon may claim at once: it must not find the VM
        // still locked by that recovery. (Several orphans: each is one chance for that race.)
        let orphans = orphanVMs.map { "20261127T000000Z.1.dead.\($0.vm)" }
        for (name, vm) in zip(orphans, orphanVMs) { fleet.dir.write("spool/active/" + name, "vm=\(vm.vm)\n") }
        let second = try fleet.daemon(tag: 2)
        defer { second.stop() }
        #expect(
            eventually(timeout: 20) { orphans.allSatisfy { fleet.folders()[$0] == [.done] } },
            "\(fleet.folders()); \(fleet.spool.names(in: .failed).map { fleet.record($0, in: .failed) })")
        for name in orphans {
            #expect(fleet.record(name, in: .done).contains("recovered="), "\(name) was cleaned up, then retried")
        }
        #expect(fleet.folders()[busy] == [.active], "the first daemon's job is still running, untouched")
        #expect(!second.standardError.contains(busy), "the second daemon never touched it")

        fleet.release("busy01")
        #expect(eventually(timeout: 60) { fleet.folders()[busy] == [.done] })
        let record = fleet.record(busy, in: .done)
        #expect(record.contains("status=done") && !record.contains("recovered="), "\(record)")
        stop(first, "first")
        stop(second, "second")
        expectEachJobDoneOnce(fleet, [busy] + orphans, vms: ["busy01"] + orphanVMs.map(\.vm))
    }

    @Test("inotify queue overflow: jobs whose events were all dropped are done at once, the rescan timer an hour off")
    func inotifyQueueOverflow() throws {
        let vms = Self.vms("ov", 17)
        let fleet = try StandInFleet(vms: vms)
        let daemon = try fleet.daemon(tag: 1, verbose: true)
        defer { daemon.stop() }
        try awaitWatching(daemon)
        let queue = try InotifyQueue.maxQueuedEvents()
        var names: [String] = []
        // Twice: the daemon is stopped (SIGSTOP), its inotify queue is filled to overflowing with
        // events in done/, then jobs are dropped: the kernel drops every one of their events.
        for batch in [vms[0..<8], vms[8..<16]] {
            try InotifyQueue.whileStopped(daemon) {
                InotifyQueue.fill(fleet.spool.layout.done, events: queue + 16)
                names += try batch.map { try fleet.spool.enqueue(JobRequest(vm: $0.vm)) }
            }
            #expect(
                eventually(timeout: 60) { Set(fleet.spool.names(in: .done)).isSuperset(of: names) },
                "done: \(fleet.spool.names(in: .done).count) of \(names.count)")
        }
        // A job after the overflows is found through its own event: the watcher still serves.
        names.append(try fleet.spool.enqueue(JobRequest(vm: vms[16].vm)))
        #expect(eventually(timeout: 60) { fleet.spool.names(in: .done).count == names.count })

        let log = daemon.standardError.split(separator: "\n")
        let warnings = log.filter { $0.contains("warning: inotify queue overflowed") }
        #expect(warnings.count == 1, "one warning for two overflows: \(warnings)")
        #expect(warnings.first?.contains(InotifyEvents.overflowWarning) == true, "\(warnings)")
        #expect(log.contains { $0.contains("inotify queue overflowed again (2 times so far)") }, "the second overflow")
        #expect(daemon.isRunning)
        stop(daemon, "overflowed")
        expectEachJobDoneOnce(fleet, names, vms: vms.map(\.vm))
    }
}

/// The kernel's inotify queue of a daemon, filled to overflowing while the daemon cannot read it.
enum InotifyQueue {
    /// Events one inotify instance queues before it drops them (fs.inotify.max_queued_events).
    static func maxQueuedEvents() throws -> Int {
        let text = try String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8)
        let n = try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        try #require(n <= 1 << 20, "max_queued_events is \(n): filling it would take too long")
        return n
    }

    /// `events` IN_CLOSE_WRITE events in a watched folder, on two hidden files in turn (the kernel
    /// merges an event identical to the one queued just before it).
    static func fill(_ directory: String, events: Int) {
        for i in 0..<events {
            let fd = open(directory + "/.filler.\(i % 2)", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if fd >= 0 { close(fd) }
        }
    }

    /// Runs `body` while `child` is stopped (SIGSTOP, confirmed in /proc), then lets it go on.
    static func whileStopped(_ child: ChildProcess, _ body: () throws -> Void) throws {
        child.signal(SIGSTOP)
        defer { child.signal(SIGCONT) }
        try #require(eventually(timeout: 10) { state(of: child.pid) == "T" }, "the daemon did not stop")
        try body()
    }

    /// The state letter of a process (/proc/PID/stat, after the command's closing parenthesis).
    static func state(of pid: Int32) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].first { $0 != " " }
    }
}

/// The watcher's handling of one event, with events injected (no inotify instance: the library's
/// state is process-wide and the pool tests use it).
@Suite("inotify events", .tags(.unit))
struct InotifyEventsTests {
    let messages = CapturedMessages()
    var logger: Logger { Logger(label: "test") { [messages] _ in CapturingLogHandler(messages: messages) } }

    @Test("IN_Q_OVERFLOW asks the pool for a full pass at once and is warned about once")
    func overflowAsksForAFullPass() {
        let channel = WakeChannel()
        let events = InotifyEvents(channel: channel, logger: logger)
        events.handle(mask: UInt32(IN_MOVED_TO))
        #expect(!channel.drain().overflow, "an ordinary event only wakes the pool")
        for _ in 0..<3 { events.handle(mask: UInt32(IN_Q_OVERFLOW)) }
        #expect(channel.drain().overflow, "the pool is told to rescan everything")
        #expect(events.overflowCount == 3)
        let warnings = messages.all.filter { $0.hasPrefix("warning ") }
        #expect(warnings == ["warning " + InotifyEvents.overflowWarning], "\(messages.all)")
        #expect(messages.all.filter { $0.hasPrefix("debug ") && $0.contains("overflowed again") }.count == 2)
    }

    @Test("every event wakes the pool", .timeLimit(.minutes(1)))
    func everyEventWakes() async {
        for mask in [IN_MOVED_TO, IN_CLOSE_WRITE, IN_Q_OVERFLOW] {
            let channel = WakeChannel()
            InotifyEvents(channel: channel, logger: logger).handle(mask: UInt32(mask))
            var wakes = channel.stream.makeAsyncIterator()
            // The wake-up is buffered by then: next() returns at once (or the time limit fails it).
            #expect(await wakes.next() != nil, "mask \(mask)")
        }
    }
}

/// The daemon's mark in the spool, with real files and flock.
@Suite("daemon presence", .tags(.spool))
struct DaemonPresenceTests {
    let dir = TempDir("presence")

    @Test("a daemon finds the others that hold their mark; a mark left by a killed daemon goes")
    func findsLiveOthers() throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let locks = spool.locks.directory
        let live = try #require(try FileLock.tryAcquire(locks + "/daemon.424242"))
        FileManager.default.createFile(atPath: locks + "/daemon.434343", contents: nil)  // nobody holds it

        let presence = try DaemonPresence.announce(in: spool)
        #expect(presence.others == [424242])
        #expect(!FileManager.default.fileExists(atPath: locks + "/daemon.434343"), "the stale mark was removed")
        #expect(presence.path == locks + "/daemon.\(getpid())")
        #expect(!FileLock.isFree(presence.path), "its own mark is held")
        let message = try #require(presence.othersMessage(spool: spool.layout.root))
        #expect(message.hasPrefix("another backup_vmd serves spool \(spool.layout.root) too (pid 424242)"))
        #expect(!message.contains("\n"))

        presence.release()
        #expect(!FileManager.default.fileExists(atPath: presence.path), "a daemon that stops takes its mark away")
        withExtendedLifetime(live) {}
    }
}

/// What the two-daemon test relies on, shown without a race: at every moment a recovered job is back
/// in new/, its VM is free, so a daemon in another process that claims it at once can run it. The
/// probe looks whenever the recovery logs (it reports the requeue while it still runs).
@Suite("recovery hands a requeued job over", .tags(.spool))
struct RequeueHandOverTests {
    let dir = TempDir("handover")

    /// A log handler that, at each message, notes whether the job is in new/ and its VM lock free.
    struct Probe: LogHandler {
        final class Seen: @unchecked Sendable {
            let lock = NSLock()
            var vmFreeWhileInNew: [Bool] = []
        }
        let spool: Spool
        let job: String
        let vm: String
        let seen = Seen()
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            guard spool.names(in: .new).contains(job) else { return }
            let free = FileLock.isFree(spool.locks.vmLockPath(vm))
            seen.lock.withLock { seen.vmFreeWhileInNew.append(free) }
        }
    }

    @Test("the VM lock is let go before the job is back in new/")
    func vmIsFreeWhenTheJobIsBackInNew() throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let name = try spool.enqueue(JobRequest(vm: "web01"))
        try #require(try spool.claim(name)).closeDescriptor()  // its worker died
        let probe = Probe(spool: spool, job: name, vm: "web01")
        let recovery = OrphanRecovery(
            spool: spool, executor: FakeExecutor(), maxRecoveries: 3, logger: Logger(label: "test") { _ in probe })
        #expect(recovery.run() == [.requeued(name)])
        let seen = probe.seen.lock.withLock { probe.seen.vmFreeWhileInNew }
        #expect(!seen.isEmpty, "the recovery reported the requeue")
        #expect(seen.allSatisfy { $0 }, "the VM was still locked by the recovery while its job was in new/: \(seen)")
    }
}
