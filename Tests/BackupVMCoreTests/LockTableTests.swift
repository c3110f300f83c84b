import Foundation
import Logging
import Testing

@testable import BackupVMCore

@Suite("who holds a slot, from /proc/locks", .tags(.unit))
struct LockTableTests {
    let dir = TempDir("locks")

    @Test func procLocksLinesAreParsed() {
        let table = LockTable.parse(
            """
            1: POSIX  ADVISORY  WRITE 811 00:19:1402 0 EOF
            2: FLOCK  ADVISORY  WRITE 24990 fe:00:16221505 0 EOF
            2: -> FLOCK  ADVISORY  WRITE 25001 fe:00:16221505 0 EOF
            3: OFDLCK ADVISORY  READ  -1 fe:00:77 0 EOF
            4: FLOCK  ADVISORY  WRITE 300 103:0a:5333031 0 EOF
            garbage line

            """)
        #expect(
            table.holders == [
                LockTable.FileID(major: 0xfe, minor: 0, inode: 16_221_505): 24990,
                LockTable.FileID(major: 0x103, minor: 0x0a, inode: 5_333_031): 300,
            ], "waiters, POSIX and OFD locks hold no slot")
    }

    @Test func aLockHeldHereIsSeenWithoutTakingIt() throws {
        let path = dir.path + "/vm.web01"
        #expect(LockTable.current()?.holder(of: path) == nil, "no file, no holder")
        let lock = try #require(try FileLock.tryAcquire(path))
        #expect(LockTable.isReliable(for: dir.path), "this machine's /tmp shows its locks in /proc/locks")
        #expect(LockTable.current()?.holder(of: path) == getpid())
        lock.release()
        #expect(LockTable.current()?.holder(of: path) == nil)
    }

    /// /proc/locks reports no size; Foundation's FileManager.contents(atPath:) read only its first
    /// page (about 70 locks). Beyond it every lock looked free, and the reliability probe could fail
    /// for good, so status and dispatch fell back to taking slots (a busy machine, or two daemons).
    @Test func locksBeyondTheFirstPageAreSeen() throws {
        let held = try (0..<200).map { try #require(try FileLock.tryAcquire(dir.path + "/slot.\($0)")) }
        let text = try #require(Files.readProcFile("/proc/locks"))
        #expect(text.count > 8192, "enough locks to fill pages: \(text.count) bytes")
        // Up to three reads: a line can be skipped when other tests' locks change between pages.
        var unseen = Set(held.map(\.path))
        for _ in 0..<3 where !unseen.isEmpty {
            let table = try #require(LockTable.current())
            unseen = unseen.filter { table.holder(of: $0) != getpid() }
        }
        #expect(unseen.isEmpty, "\(unseen.count) of 200 held locks not seen")
        for lock in held { lock.release() }
    }
}

@Suite("status and dispatch never take a slot", .tags(.spool))
struct SlotObservationTests {
    let dir = TempDir("slots")

    @Test func heldSlotsNamesHoldersAndTakesNoLock() throws {
        let spool = Spool(root: dir.path + "/spool")
        try spool.prepare()
        let locks = spool.locks
        // Held by another open file description (flock locks are per description, so this conflicts
        // with any other open of the file, in this process too).
        let held = try #require(try locks.tryAcquireVM("web01"))
        held.describeHolder("pid=\(getpid()) job=J1")
        let quiet = try #require(try locks.tryAcquireHost("kvm2", limit: 1))  // no holder note
        // Slots that exist but are free, and are taken and released in a tight loop meanwhile by a
        // process of its own: a lock this process releases can linger for an instant in a child that
        // another test spawns at that moment (the child holds a copy of every descriptor until its
        // exec closes them), which a churn thread here would count as "status took a slot".
        for lock in [try locks.tryAcquireVM("db01"), try locks.tryAcquireHost("kvm1", limit: 2)] { lock?.release() }
        let churn = try ChildProcess(
            "/usr/bin/python3",
            [
                "-c",
                """
                import fcntl, os, sys
                locks, marks = sys.argv[1], sys.argv[2]
                n = r = 0
                while not os.path.exists(marks + "/stop"):
                    n += 1
                    fds = [os.open(locks + "/" + f, os.O_RDWR | os.O_CLOEXEC) for f in ("vm.db01", "host.kvm1.0")]
                    try:
                        for fd in fds:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        r += 1
                    for fd in fds:
                        os.close(fd)
                    if n == 1:
                        open(marks + "/started", "w").close()
                print(n, r)
                """, locks.directory, dir.path,
            ])
        defer { churn.stop() }
        try #require(eventually(timeout: 30) { FileManager.default.fileExists(atPath: dir.path + "/started") })
        var reports: [[(slot: String, holder: String)]] = []
        for _ in 0..<300 {
            reports.append(locks.heldSlots())
            #expect(locks.hostHasFreeSlot("kvm1", limit: 2), "one of kvm1's two slots is always free")
            #expect(!locks.hostHasFreeSlot("kvm2", limit: 1))
        }
        FileManager.default.createFile(atPath: dir.path + "/stop", contents: nil)
        #expect(churn.wait(timeout: 30))
        let counts = churn.standardOutput.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        try #require(counts.count == 2, "churn said: \(churn.standardOutput) \(churn.standardError)")
        let (rounds, refused) = (counts[0], counts[1])
        #expect(rounds > 0)
        #expect(refused == 0, "status and dispatch took a slot \(refused) times in \(rounds) rounds")
        let last = try #require(reports.last)
        #expect(last.first { $0.slot == "vm.web01" }?.holder == "pid=\(getpid()) job=J1")
        #expect(last.first { $0.slot == "host.kvm2.0" }?.holder == "pid=\(getpid())")
        for report in reports {
            #expect(report.contains { $0.slot == "vm.web01" })
            #expect(!report.contains { $0.slot == "host.kvm1.1" })
        }
        withExtendedLifetime((held, quiet)) {}
    }
}
