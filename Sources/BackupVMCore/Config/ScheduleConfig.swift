/// One line of backup_vm.d/sheduler.conf: which VM, on which weekdays, how many backups to keep,
/// whether the newest compressed copy also stays on the hypervisor.
public struct ScheduleEntry: Sendable, Equatable {
    public let vm: String
    public let weekdays: Weekdays
    public let keep: Int
    public let keepOnHost: Bool
    public let line: Int
}

/// backup_vm.d/sheduler.conf (the seed's spelling): `VM  DAYS  KEEP  [KEEP_ON_HOST]` per line,
/// whitespace separated, `#` comments.
public struct ScheduleConfig: Sendable {
    public let entries: [ScheduleEntry]

    public func entry(for vm: String) -> ScheduleEntry? { entries.first { $0.vm == vm } }

    public static let lineExpectation = "expected: VM_NAME DAYS KEEP [KEEP_ON_HOST], e.g. 'web01 Mon-Fri 7 yes'"

    public static func parse(_ text: String, displayName file: String) -> (ScheduleConfig, [ConfigDiagnostic]) {
        var entries: [ScheduleEntry] = []
        var diagnostics: [ConfigDiagnostic] = []
        var firstLine: [String: Int] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if fields.isEmpty { continue }
            func problem(_ key: String?, _ value: String?, _ message: String) {
                diagnostics.append(
                    ConfigDiagnostic(file: file, line: lineNumber, key: key, value: value, message: message))
            }
            guard (3...4).contains(fields.count) else {
                problem(nil, fields.joined(separator: " "), "\(fields.count) fields; " + lineExpectation)
                continue
            }
            let vm = fields[0]
            var ok = true
            if !SafeName.isValidVMName(vm) {
                problem("VM_NAME", vm, "expected \(SafeName.vmExpectation)")
                ok = false
            } else if let first = firstLine[vm] {
                problem("VM_NAME", vm, "duplicate VM line (first on line \(first)); expected one line per VM")
                ok = false
            }
            let days = Weekdays.parse(fields[1])
            if days == nil {
                problem("DAYS", fields[1], "expected \(Weekdays.expectation)")
                ok = false
            }
            let keep = Int(fields[2])
            if keep == nil || keep! < 1 || keep! > 10000 {
                problem("KEEP", fields[2], "expected a whole number of backups to keep, from 1 to 10000")
                ok = false
            }
            var keepOnHost = false
            if fields.count == 4 {
                if let b = BoolWord.parse(fields[3]) {
                    keepOnHost = b
                } else {
                    problem("KEEP_ON_HOST", fields[3], "expected yes or no")
                    ok = false
                }
            }
            if firstLine[vm] == nil { firstLine[vm] = lineNumber }
            if ok {
                entries.append(
                    ScheduleEntry(vm: vm, weekdays: days!, keep: keep!, keepOnHost: keepOnHost, line: lineNumber))
            }
        }
        return (ScheduleConfig(entries: entries), diagnostics)
    }
}
