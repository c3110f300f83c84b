import Foundation
import Logging

/// Why a VM could not be located. The descriptions are what operators (and the lab tests) read.
public enum LocateError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A host that was asked and did not have the VM: `error` nil when it answered "not defined".
    public struct Tried: Sendable, Equatable {
        public let host: String
        public let error: RemoteError?

        public init(host: String, error: RemoteError?) {
            self.host = host
            self.error = error
        }
    }

    /// A host that could not be asked.
    public struct Unreachable: Sendable, Equatable {
        public let host: String
        public let error: RemoteError

        public init(host: String, error: RemoteError) {
            self.host = host
            self.error = error
        }
    }

    /// Running (or paused) on more than one host: a split brain an operator must resolve.
    case runningOnSeveral(vm: String, hosts: [String])
    /// Shut off on several hosts whose definition files have the same age.
    case sameAgeDefinitions(vm: String, hosts: [String])
    /// Defined nowhere (or only on hosts that could not be asked).
    case notFound(vm: String, tried: [Tried])
    /// Shut off where found while other hosts, on which it may run, could not be asked.
    case offWhileUnreachable(vm: String, found: [String], unreachable: [Unreachable])

    public var description: String {
        switch self {
        case .runningOnSeveral(let vm, let hosts):
            return "\(vm) is running on \(hosts.joined(separator: " and ")) at once; "
                + "stop the stray copy, then back it up"
        case .sameAgeDefinitions(let vm, let hosts):
            return "\(vm) is defined (shut off) on \(hosts.joined(separator: " and ")) with definitions of the same "
                + "age; undefine the stale one (virsh undefine) so backup_vm knows which to back up"
        case .notFound(let vm, let tried):
            let list = tried.map { t in t.error.map { "\(t.host): \($0)" } ?? "\(t.host): not defined" }
            return "\(vm) was found on no host (tried \(list.joined(separator: "; ")))"
        case .offWhileUnreachable(let vm, let found, let unreachable):
            let why = unreachable.map { "\($0.host) is unreachable (\($0.error))" }.joined(separator: ", ")
            return "\(vm) is shut off on \(found.joined(separator: ", ")), but \(why); "
                + "it may be running there, so it is not backed up from a possibly stale copy"
        }
    }
}

/// Finds the hypervisor a VM is to be backed up on. VMs migrate, so every configured host is asked,
/// all at once (one thread per host: an unreachable host costs one connect timeout, not one per
/// host, however many hosts there are).
///
/// The rule, documented in the README:
/// - running or paused on exactly one host: that host;
/// - running on several: an error (a split brain that an operator must resolve);
/// - defined but off on several and running on none: the host with the newest definition file, with a
///   warning naming the others; the same age everywhere is an error;
/// - found nowhere: an error naming every host tried and why an unreachable one failed;
/// - found only shut off while some host is unreachable: an error, since the VM may be running on the
///   unreachable host and the copy found would be stale.
public struct VMLocator: Sendable {
    /// Asks one host about one VM: its state (nil: not defined there) and the modification time of
    /// its definition file.
    public typealias Query =
        @Sendable (RemoteHost, String) throws(RemoteError) -> (state: DomainState?, definitionTime: Int)

    /// The real query: one ssh round trip running virsh.
    public static let virshQuery: Query = { host, vm throws(RemoteError) in try Virsh(host: host).sighting(vm) }

    public typealias NotFound = LocateError

    public let hosts: [RemoteHost]
    public let logger: Logger
    let query: Query

    public init(hosts: [RemoteHost], logger: Logger) {
        self.init(hosts: hosts, logger: logger, query: VMLocator.virshQuery)
    }

    /// With another query (tests).
    public init(hosts: [RemoteHost], logger: Logger, query: @escaping Query) {
        self.hosts = hosts
        self.logger = logger
        self.query = query
    }

    struct Sighting: Sendable {
        var host: String
        var state: DomainState?
        var definitionTime: Int
        var error: RemoteError?
    }

    public func locate(_ vm: String) throws(LocateError) -> (host: String, state: DomainState) {
        let sightings = look(for: vm)
        let found = sightings.filter { $0.state != nil }
        let unreachable = sightings.compactMap { s in s.error.map { LocateError.Unreachable(host: s.host, error: $0) } }
        let live = found.filter { $0.state == .running || $0.state == .paused || $0.state == .other }
        if live.count > 1 { throw .runningOnSeveral(vm: vm, hosts: live.map(\.host)) }
        if let one = live.first, let state = one.state {
            if !unreachable.isEmpty {
                logger.warning(
                    "host(s) unreachable while locating \(vm): \(unreachable.map(\.host).joined(separator: ", "))")
            }
            return (one.host, state)
        }
        if !found.isEmpty && !unreachable.isEmpty {
            throw .offWhileUnreachable(vm: vm, found: found.map(\.host), unreachable: unreachable)
        }
        if found.isEmpty {
            throw .notFound(vm: vm, tried: sightings.map { LocateError.Tried(host: $0.host, error: $0.error) })
        }
        return (try newestDefinition(vm, found), .shutOff)
    }

    /// Of several hosts where the VM is defined and off, the one with the newest definition file.
    func newestDefinition(_ vm: String, _ found: [Sighting]) throws(LocateError) -> String {
        if found.count == 1 { return found[0].host }
        let sorted = found.sorted { $0.definitionTime > $1.definitionTime }
        guard sorted[0].definitionTime > sorted[1].definitionTime else {
            throw .sameAgeDefinitions(vm: vm, hosts: found.map(\.host))
        }
        let hosts = found.map(\.host).joined(separator: ", ")
        logger.warning("\(vm) is defined on \(hosts); backing up the newest definition, on \(sorted[0].host)")
        return sorted[0].host
    }

    /// Asks every host at once; one sighting per host, in the order of `hosts`.
    func look(for vm: String) -> [Sighting] {
        let query = self.query
        return OneThreadEach.map(hosts) { host in
            var s = Sighting(host: host.name, state: nil, definitionTime: 0, error: nil)
            do throws(RemoteError) {
                (s.state, s.definitionTime) = try query(host, vm)
            } catch {
                s.error = error
            }
            return s
        }
    }
}

/// Runs a blocking body for every element at once, each on a thread of its own, and waits for all.
/// Unlike DispatchQueue.concurrentPerform, which runs about as many at once as there are cores,
/// nothing waits for a free thread: N hosts that each take one ssh timeout cost one timeout.
enum OneThreadEach {
    static func map<T: Sendable, R: Sendable>(_ items: [T], _ body: @escaping @Sendable (T) -> R) -> [R] {
        let results = FanOutResults<R>()
        let group = DispatchGroup()
        for (i, item) in items.enumerated() {
            group.enter()
            let thread = Thread {
                results.set(i, body(item))
                group.leave()
            }
            thread.name = "fan-out \(i)"
            thread.start()
        }
        group.wait()
        return (0..<items.count).map { results.get($0)! }
    }
}

private final class FanOutResults<R: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Int: R] = [:]

    func set(_ i: Int, _ r: R) { lock.withLock { items[i] = r } }
    func get(_ i: Int) -> R? { lock.withLock { items[i] } }
}
