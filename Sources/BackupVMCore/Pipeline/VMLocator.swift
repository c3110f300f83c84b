import Foundation
import Logging

/// Finds the hypervisor a VM is to be backed up on. VMs migrate, so every configured host is asked
/// (in parallel: an unreachable host costs one connect timeout, not one per host).
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
    public let hosts: [RemoteHost]
    public let logger: Logger

    public init(hosts: [RemoteHost], logger: Logger) {
        self.hosts = hosts
        self.logger = logger
    }

    public struct NotFound: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    struct Sighting: Sendable {
        var host: String
        var state: DomainState?
        var definitionTime: Int
        var error: RemoteError?
    }

    public func locate(_ vm: String) throws(NotFound) -> (host: String, state: DomainState) {
        let sightings = look(for: vm)
        let found = sightings.filter { $0.state != nil }
        let unreachable = sightings.filter { $0.error != nil }
        let live = found.filter { $0.state == .running || $0.state == .paused || $0.state == .other }
        if live.count > 1 {
            throw NotFound(
                description:
                    "\(vm) is running on \(live.map(\.host).joined(separator: " and ")) at once; stop the stray copy, then back it up"
            )
        }
        if let one = live.first {
            if !unreachable.isEmpty {
                logger.warning(
                    "host(s) unreachable while locating \(vm): \(unreachable.map(\.host).joined(separator: ", "))")
            }
            return (one.host, one.state!)
        }
        if !found.isEmpty && !unreachable.isEmpty {
            throw NotFound(
                description:
                    "\(vm) is shut off on \(found.map(\.host).joined(separator: ", ")), but \(describe(unreachable)); it may be running there, so it is not backed up from a possibly stale copy"
            )
        }
        if found.count == 1 { return (found[0].host, .shutOff) }
        if found.count > 1 {
            let sorted = found.sorted { $0.definitionTime > $1.definitionTime }
            guard sorted[0].definitionTime > sorted[1].definitionTime else {
                throw NotFound(
                    description:
                        "\(vm) is defined (shut off) on \(found.map(\.host).joined(separator: " and ")) with definitions of the same age; undefine the stale one (virsh undefine) so backup_vm knows which to back up"
                )
            }
            logger.warning(
                "\(vm) is defined on \(found.map(\.host).joined(separator: ", ")); backing up the newest definition, on \(sorted[0].host)"
            )
            return (sorted[0].host, .shutOff)
        }
        let tried = sightings.map { s in s.error == nil ? "\(s.host): not defined" : "\(s.host): \(s.error!)" }
        throw NotFound(description: "\(vm) was found on no host (tried \(tried.joined(separator: "; ")))")
    }

    func describe(_ unreachable: [Sighting]) -> String {
        unreachable.map { "\($0.host) is unreachable (\($0.error!))" }.joined(separator: ", ")
    }

    func look(for vm: String) -> [Sighting] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var items: [Int: Sighting] = [:]
        }
        let results = Results()
        let hosts = self.hosts
        DispatchQueue.concurrentPerform(iterations: hosts.count) { i in
            let virsh = Virsh(host: hosts[i])
            var s = Sighting(host: hosts[i].name, state: nil, definitionTime: 0, error: nil)
            do throws(RemoteError) {
                (s.state, s.definitionTime) = try virsh.sighting(vm)
            } catch {
                s.error = error
            }
            results.lock.withLock { results.items[i] = s }
        }
        return (0..<hosts.count).map { results.items[$0]! }
    }
}
