import Foundation

/// Which VMs nobody backs up: domains defined on a HostServer without a line in sheduler.conf, and
/// lines whose VM is defined on no HostServer. `backup_vm doctor` finds it (it asks every hypervisor)
/// and leaves it in `SPOOL/coverage.json`, which `status` shows with its age (status reads files
/// only; run doctor from cron to keep it fresh).
public struct Coverage: Codable, Sendable, Equatable {
    public var checked: Date
    /// The domains each answering hypervisor has defined (valid names only).
    public var domains: [String: [String]]
    /// Hypervisors that did not answer: a VM missing elsewhere may be there.
    public var unreachable: [String]
    /// Defined on a hypervisor, no line in sheduler.conf.
    public var unscheduled: [String]
    /// A line in sheduler.conf, defined on no hypervisor that answered.
    public var missing: [String]
    /// Names virsh listed that are not valid VM names: shown (escaped), never used.
    public var unsafeNames: [String]

    public static let fileName = "coverage.json"

    /// `listed`: per answering host, the names virsh listed, unchecked.
    public static func compute(scheduled: [String], listed: [String: [String]], unreachable: [String], now: Date)
        -> Coverage
    {
        var domains: [String: [String]] = [:]
        var unsafe: [String] = []
        for (host, names) in listed {
            domains[host] = names.filter(SafeName.isValidVMName).sorted()
            unsafe += names.filter { !SafeName.isValidVMName($0) }.map { "\(host): \($0.debugDescription)" }
        }
        let defined = Set(domains.values.joined())
        let scheduledSet = Set(scheduled)
        return Coverage(
            checked: now, domains: domains, unreachable: unreachable.sorted(),
            unscheduled: defined.subtracting(scheduledSet).sorted(),
            missing: scheduled.filter { !defined.contains($0) },
            unsafeNames: unsafe.sorted())
    }

    /// The hosts on which `vm` is defined.
    public func hosts(of vm: String) -> [String] { domains.filter { $0.value.contains(vm) }.map(\.key).sorted() }

    public static func read(spool: SpoolLayout) -> Coverage? {
        guard let bytes = Files.readRegularFile(spool.root + "/" + fileName, limit: 4 << 20) else { return nil }
        let decoder = OperatorJSON.decoder()
        return try? decoder.decode(Coverage.self, from: Data(bytes))
    }

    public func write(spool: SpoolLayout) throws {
        let encoder = OperatorJSON.encoder(pretty: false)
        try Files.replaceFile(spool.root + "/" + Self.fileName, contents: Array(try encoder.encode(self)))
    }
}
