/// Turns the `Key=value` lines of one file into typed values, collecting a diagnostic (file, line,
/// key, value, what was expected) for every unknown key, repeated key and bad value.
struct AssignmentReader {
    let file: String
    private(set) var diagnostics: [ConfigDiagnostic] = []
    private var byKey: [String: ShellAssignment] = [:]

    init(file: String, assignments: [ShellAssignment], knownKeys: [String]) {
        self.file = file
        for a in assignments {
            guard knownKeys.contains(a.key) else {
                let hint = knownKeys.first { $0.lowercased() == a.key.lowercased() }
                let expected =
                    hint.map { "unknown key; did you mean \($0)?" }
                    ?? "unknown key; expected one of \(knownKeys.joined(separator: ", "))"
                diagnostics.append(
                    ConfigDiagnostic(file: file, line: a.line, key: a.key, value: a.value, message: expected))
                continue
            }
            if let earlier = byKey[a.key] {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: file, line: a.line, key: a.key, value: a.value,
                        message: "key set twice (first on line \(earlier.line)); expected it once"))
                continue
            }
            byKey[a.key] = a
        }
    }

    func has(_ key: String) -> Bool { byKey[key] != nil }
    func line(of key: String) -> Int { byKey[key]?.line ?? 0 }

    mutating func fail(_ key: String, _ message: String) {
        let a = byKey[key]
        diagnostics.append(
            ConfigDiagnostic(file: file, line: a?.line ?? 0, key: key, value: a?.value, message: message))
    }

    mutating func string(_ key: String, required: Bool = false) -> String? {
        guard let a = byKey[key] else {
            if required {
                diagnostics.append(
                    ConfigDiagnostic(file: file, line: 0, key: key, message: "missing; this key is required"))
            }
            return nil
        }
        if a.value.isEmpty {
            fail(key, "expected a value, found an empty string")
            return nil
        }
        return a.value
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>, default def: Int) -> Int {
        guard let raw = string(key) else { return def }
        guard let n = Int(raw), range.contains(n) else {
            fail(key, "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            return def
        }
        return n
    }

    mutating func bool(_ key: String, default def: Bool) -> Bool {
        guard let raw = string(key) else { return def }
        guard let b = BoolWord.parse(raw) else {
            fail(key, "expected yes or no")
            return def
        }
        return b
    }

    mutating func choice<T: CaseIterable & RawRepresentable>(_ key: String, default def: T) -> T
    where T.RawValue == String {
        guard let raw = string(key) else { return def }
        guard let v = T(rawValue: raw.lowercased()) else {
            fail(key, "expected one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            return def
        }
        return v
    }

    /// Absolute paths only, without `..` components, when `relativeTo` is nil; otherwise relative paths
    /// are resolved against it (used for paths beside the configuration, like SpoolDir).
    mutating func path(_ key: String, relativeTo base: String? = nil, default def: String? = nil) -> String? {
        guard let raw = string(key) else { return def }
        if raw.split(separator: "/").contains("..") {
            fail(key, "expected a path without '..' components")
            return def
        }
        if raw.hasPrefix("/") { return raw }
        guard let base else {
            fail(key, "expected an absolute path (starting with /)")
            return def
        }
        return base + "/" + raw
    }
}

/// The yes/no spellings the seed's shell files used.
enum BoolWord {
    static func parse(_ raw: String) -> Bool? {
        switch raw.lowercased() {
        case "yes", "y", "true", "1", "on": return true
        case "no", "n", "false", "0", "off": return false
        default: return nil
        }
    }
}
