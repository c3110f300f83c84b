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
        for (index, raw) in TextLines.split(text).enumerated() {
            let lineNumber = index + 1
            let problem = { (key: String?, value: String?, message: String) in
                diagnostics.append(
                    ConfigDiagnostic(file: file, line: lineNumber, key: key, value: value, message: message))
            }
            // Before the comment is cut off: a file with old Mac line endings is one line, and when
            // that starts with '#' it would otherwise schedule nothing without a word.
            if let stray = TextLines.strayBreakProblem(in: raw) {
                problem(nil, nil, stray)
                continue
            }
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if fields.isEmpty { continue }
            guard (3...4).contains(fields.count) else {
                problem(nil, fields.joined(separator: " "), "\(fields.count) fields; " + lineExpectation)
                continue
            }
            let duplicateOf = firstLine[fields[0]]
            if duplicateOf == nil { firstLine[fields[0]] = lineNumber }
            if let entry = entry(fields, line: lineNumber, duplicateOf: duplicateOf, problem) {
                entries.append(entry)
            }
        }
        return (ScheduleConfig(entries: entries), diagnostics)
    }

    /// One line's 3 or 4 fields as an entry; nil after reporting every bad field through `problem`.
    static func entry(
        _ fields: [String], line: Int, duplicateOf: Int?,
        _ problem: (_ key: String?, _ value: String?, _ message: String) -> Void
    ) -> ScheduleEntry? {
        let vm = fields[0]
        var ok = true
        if !SafeName.isValidVMName(vm) {
            problem("VM_NAME", vm, "expected \(SafeName.vmExpectation)")
            ok = false
        } else if let duplicateOf {
            problem("VM_NAME", vm, "duplicate VM line (first on line \(duplicateOf)); expected one line per VM")
            ok = false
        }
        let days = Weekdays.parse(fields[1])
        if days == nil { problem("DAYS", fields[1], "expected \(Weekdays.expectation)") }
        let keep = Int(fields[2]).flatMap { (1...10000).contains($0) ? $0 : nil }
        if keep == nil { problem("KEEP", fields[2], "expected a whole number of backups to keep, from 1 to 10000") }
        var keepOnHost: Bool? = false
        if fields.count == 4 {
            keepOnHost = BoolWord.parse(fields[3])
            if keepOnHost == nil { problem("KEEP_ON_HOST", fields[3], "expected yes or no") }
        }
        guard ok, let days, let keep, let keepOnHost else { return nil }
        return ScheduleEntry(vm: vm, weekdays: days, keep: keep, keepOnHost: keepOnHost, line: line)
    }
}
