import Foundation
import Logging
import Testing

@testable import BackupVMCore

/// Holds every arriving thread until `count` have arrived (or the timeout passes) and records how
/// many were in flight at once: proof that N blocking calls really ran at the same time.
final class Barrier: @unchecked Sendable {
    let count: Int
    let timeout: TimeInterval
    private let condition = NSCondition()
    private var arrived = 0
    private var inFlight = 0
    private(set) var maxInFlight = 0
    private(set) var timedOut = 0

    init(count: Int, timeout: TimeInterval = 10) {
        self.count = count
        self.timeout = timeout
    }

    func arriveAndWait() {
        condition.lock()
        defer { condition.unlock() }
        arrived += 1
        inFlight += 1
        maxInFlight = max(maxInFlight, inFlight)
        condition.broadcast()
        let deadline = Date().addingTimeInterval(timeout)
        while arrived < count {
            if !condition.wait(until: deadline) { break }
        }
        if arrived < count { timedOut += 1 }
        inFlight -= 1
    }

    var summary: (maxInFlight: Int, timedOut: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (maxInFlight, timedOut)
    }
}

@Suite("locating VMs and doctor: every host at once, typed errors, ssh failure kinds", .tags(.unit))
struct LocatorTests {
    let logger = Logger(label: "test")

    static func hosts(_ n: Int) -> [RemoteHost] {
        (1...n).map { RemoteHost(name: "kvm\($0)", sshConfig: nil, connectTimeout: 5) }
    }

    /// A locator whose hosts answer from a table: a state and definition time, or an error.
    func locator(_ answers: [(String, Result<(DomainState?, Int), RemoteError>)]) -> VMLocator {
        let table = Dictionary(uniqueKeysWithValues: answers)
        return VMLocator(
            hosts: answers.map { RemoteHost(name: $0.0, sshConfig: nil, connectTimeout: 5) }, logger: logger
        ) { host, _ throws(RemoteError) in
            switch table[host.name]! {
            case .success(let a): return (a.0, a.1)
            case .failure(let e): throw e
            }
        }
    }

    static let refused = RemoteError.connection(
        host: "kvm3", detail: "ssh: connect to host 127.0.0.13 port 1: Connection refused\n")

    @Test func locateAsksEveryHostAtOnce() throws {
        let n = 8  // more hosts than this machine has cores
        let barrier = Barrier(count: n)
        let locator = VMLocator(hosts: Self.hosts(n), logger: logger) { host, _ throws(RemoteError) in
            barrier.arriveAndWait()
            return host.name == "kvm6" ? (.running, 5) : (nil, 0)
        }
        let found = try locator.locate("web01")
        #expect(found.host == "kvm6" && found.state == .running)
        let s = barrier.summary
        #expect(s.maxInFlight == n && s.timedOut == 0, "\(s.maxInFlight) of \(n) queries were in flight at once")
    }

    @Test func doctorAsksEveryHostAtOnce() throws {
        let n = 8
        var fixture = ConfigFixture("doctor")
        fixture.main = fixture.main.replacingOccurrences(
            of: "HostServers=\"kvm1 kvm2\"",
            with: "HostServers=\"\((1...n).map { "kvm\($0)" }.joined(separator: " "))\"")
        let configuration = try Configuration.load(directory: fixture.materialize())
        #expect(configuration.main.hostServers.count == n)
        let barrier = Barrier(count: n)
        let doctor = Doctor(configuration: configuration) { host, script throws(RemoteError) in
            barrier.arriveAndWait()
            if host.name == "kvm3" { throw Self.refused }
            #expect(script.contains("/var/lib/backup_vm"))
            return
                "missing blockdev\nlibvirt Running against daemon: 9.0.0\nwork /var/lib/backup_vm 2097152\nlvm none\n"
        }
        let findings = doctor.hostChecks()
        let s = barrier.summary
        #expect(s.maxInFlight == n && s.timedOut == 0, "\(s.maxInFlight) of \(n) preflights were in flight at once")
        let text = findings.map(\.description)
        #expect(text.first == "ok   host kvm1: ssh as root with a verified host key", "in the order of HostServers")
        #expect(text.contains("FAIL host kvm1: blockdev not found; install it (apt-get install util-linux)"))
        #expect(text.contains("ok   host kvm2: libvirt Running against daemon: 9.0.0"))
        #expect(text.contains("ok   host kvm2: working path /var/lib/backup_vm: 2.0 GiB free"))
        #expect(text.contains("ok   host kvm2: no LVM tools (fine for file disks)"))
        #expect(
            text.contains { $0.hasPrefix("ok   host kvm2: live backups not possible: missing libvirt ≥ 7.2") },
            "no profile asks for live: reported, not failed: \(text)")
        let kvm3 = findings.filter { $0.subject == "host kvm3" }
        #expect(kvm3.count == 1 && !kvm3[0].ok)
        #expect(kvm3[0].detail.contains("cannot reach kvm3 over ssh") && kvm3[0].detail.contains("check the address"))
    }

    // MARK: - The locate rule and its errors

    @Test func runningOnOneHostWinsAndUnreachableHostsOnlyWarn() throws {
        let found = try locator([
            ("kvm1", .success((.shutOff, 9))), ("kvm2", .success((.paused, 1))), ("kvm3", .failure(Self.refused)),
        ]).locate("web01")
        #expect(found.host == "kvm2" && found.state == .paused)
    }

    @Test func runningOnSeveralHosts() {
        let l = locator([("kvm1", .success((.running, 1))), ("kvm2", .success((.running, 2)))])
        #expect(throws: LocateError.runningOnSeveral(vm: "web01", hosts: ["kvm1", "kvm2"])) { try l.locate("web01") }
        #expect(
            LocateError.runningOnSeveral(vm: "web01", hosts: ["kvm1", "kvm2"]).description
                == "web01 is running on kvm1 and kvm2 at once; stop the stray copy, then back it up")
    }

    @Test func newestDefinitionWinsAndEqualAgesAreAnError() throws {
        let newest = try locator([("kvm1", .success((.shutOff, 100))), ("kvm2", .success((.shutOff, 200)))])
            .locate("web01")
        #expect(newest.host == "kvm2" && newest.state == .shutOff)
        let l = locator([("kvm1", .success((.shutOff, 100))), ("kvm2", .success((.shutOff, 100)))])
        let error = LocateError.sameAgeDefinitions(vm: "mig1", hosts: ["kvm1", "kvm2"])
        #expect(throws: error) { try l.locate("mig1") }
        #expect(
            error.description
                == "mig1 is defined (shut off) on kvm1 and kvm2 with definitions of the same age; "
                + "undefine the stale one (virsh undefine) so backup_vm knows which to back up")
    }

    @Test func foundNowhereNamesEveryHostTried() {
        let l = locator([("kvm1", .success((nil, 0))), ("kvm2", .success((nil, 0))), ("kvm3", .failure(Self.refused))])
        let error = LocateError.notFound(
            vm: "ghost1",
            tried: [
                .init(host: "kvm1", error: nil), .init(host: "kvm2", error: nil),
                .init(host: "kvm3", error: Self.refused),
            ])
        #expect(throws: error) { try l.locate("ghost1") }
        #expect(
            error.description
                == "ghost1 was found on no host (tried kvm1: not defined; kvm2: not defined; "
                + "kvm3: cannot reach kvm3 over ssh: ssh: connect to host 127.0.0.13 port 1: Connection refused)")
    }

    @Test func shutOffWhileAnotherHostIsUnreachable() {
        let l = locator([("kvm1", .success((.shutOff, 5))), ("kvm3", .failure(Self.refused))])
        let error = LocateError.offWhileUnreachable(
            vm: "web01", found: ["kvm1"], unreachable: [.init(host: "kvm3", error: Self.refused)])
        #expect(throws: error) { try l.locate("web01") }
        #expect(
            error.description
                == "web01 is shut off on kvm1, but kvm3 is unreachable (cannot reach kvm3 over ssh: ssh: connect to "
                + "host 127.0.0.13 port 1: Connection refused); it may be running there, so it is not backed up from "
                + "a possibly stale copy")
    }

    @Test func doctorSaysWhatToDoForEachKind() {
        func hint(_ stderr: String) -> String {
            Doctor.hint(for: .connection(host: "kvm4", detail: stderr), host: "kvm4")
        }
        #expect(
            hint("No ED25519 host key is known for kvm4 and you have requested strict checking.").contains(
                "ssh-keyscan -H kvm4 >> the UserKnownHostsFile"))
        let changed = hint(RemoteErrorTests.changedKey)
        #expect(
            changed.contains("CHANGED") && changed.contains("ssh-keygen -R kvm4") && changed.contains("ssh-keyscan"))
        #expect(hint("Permission denied (publickey).").contains("authorized_keys on kvm4"))
        #expect(hint("ssh: connect to host kvm4 port 22: Connection refused").contains("check the address"))
        #expect(
            Doctor.hint(for: .command(host: "kvm4", what: "preflight", status: 2, stderr: "x"), host: "kvm4")
                .contains("check the address"))
    }
}
