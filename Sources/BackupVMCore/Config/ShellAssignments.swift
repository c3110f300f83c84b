/// One `Key=value` line of a shell-style configuration file.
public struct ShellAssignment: Sendable, Equatable {
    public let key: String
    public let value: String
    public let line: Int
}

/// Parses the seed's shell-style files (`backup_vm.conf`, `vmsnapshot.d/*`): `Key=value` per line,
/// `#` comments, optional `export`, values unquoted, 'single quoted' (literal) or "double quoted"
/// (backslash escapes). Variable and command expansion are refused rather than silently taken
/// literally: the seed sourced these files with bash, and a `$` here would mean something else.
public enum ShellAssignments {
    public static func parse(_ text: String, file: String) -> (
        assignments: [ShellAssignment], diagnostics: [ConfigDiagnostic]
    ) {
        var assignments: [ShellAssignment] = []
        var diagnostics: [ConfigDiagnostic] = []
        for (index, rawLine) in TextLines.split(text).enumerated() {
            let lineNumber = index + 1
            // Before the comment check: a file with old Mac line endings is one line, and when that
            // starts with '#' it would otherwise be a comment and set nothing.
            if let problem = TextLines.strayBreakProblem(in: rawLine) {
                diagnostics.append(ConfigDiagnostic(file: file, line: lineNumber, message: problem))
                continue
            }
            var line = rawLine.drop(while: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).drop(while: { $0 == " " }) }
            guard let eq = line.firstIndex(of: "=") else {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: file, line: lineNumber, value: String(line),
                        message: "expected Key=value"))
                continue
            }
            let key = String(line[..<eq])
            guard isIdentifier(key) else {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: file, line: lineNumber, value: key,
                        message: "expected a key name (letters, digits, _) before '=' with no spaces around it"))
                continue
            }
            switch parseValue(line[line.index(after: eq)...]) {
            case .success(let value):
                assignments.append(ShellAssignment(key: key, value: value, line: lineNumber))
            case .failure(let problem):
                diagnostics.append(
                    ConfigDiagnostic(
                        file: file, line: lineNumber, key: key,
                        value: String(line[line.index(after: eq)...]),
                        message: problem.message))
            }
        }
        return (assignments, diagnostics)
    }

    struct Problem: Error { let message: String }

    static let expansionRefused = "expected a plain value: variable and command expansion ($, `) are not supported"

    static func shellSyntaxRefused(_ c: Character) -> String {
        "expected a plain value: shell syntax ('\(c)') is not supported; quote it if it is meant literally"
    }

    /// A value as the shell would read it (without expansion): unquoted, quoted parts and
    /// backslash escapes run together until a blank, after which only a comment may follow.
    static func parseValue(_ input: Substring) -> Result<String, Problem> {
        var value = ""
        var i = input.startIndex
        while i < input.endIndex {
            let c = input[i]
            let next: Result<Substring.Index, Problem>
            switch c {
            case " ", "\t":
                let rest = input[i...].drop(while: { $0 == " " || $0 == "\t" })
                if rest.isEmpty || rest.hasPrefix("#") { return .success(value) }
                return .failure(Problem(message: "expected one value; quote values that contain spaces"))
            case "'":
                next = singleQuoted(input, at: i, into: &value)
            case "\"":
                next = doubleQuoted(input, at: i, into: &value)
            case "$", "`", ";", "&", "|", "<", ">", "(", ")":
                return .failure(Problem(message: shellSyntaxRefused(c)))
            case "\\":
                let escaped = input.index(after: i)
                guard escaped < input.endIndex else {
                    return .failure(Problem(message: "expected a character after '\\'"))
                }
                value.append(input[escaped])
                next = .success(input.index(after: escaped))
            default:
                value.append(c)
                next = .success(input.index(after: i))
            }
            switch next {
            case .success(let j): i = j
            case .failure(let problem): return .failure(problem)
            }
        }
        return .success(value)
    }

    /// 'text': taken literally. Returns the index after the closing quote.
    static func singleQuoted(
        _ input: Substring, at open: Substring.Index, into value: inout String
    ) -> Result<Substring.Index, Problem> {
        let start = input.index(after: open)
        guard let close = input[start...].firstIndex(of: "'") else {
            return .failure(Problem(message: "expected a closing single quote"))
        }
        value += input[start..<close]
        return .success(input.index(after: close))
    }

    /// "text": backslash escapes \" \\ \$ \` (others stay as written); $ and ` are refused.
    /// Returns the index after the closing quote.
    static func doubleQuoted(
        _ input: Substring, at open: Substring.Index, into value: inout String
    ) -> Result<Substring.Index, Problem> {
        var j = input.index(after: open)
        while j < input.endIndex {
            let d = input[j]
            if d == "\"" { return .success(input.index(after: j)) }
            if d == "\\" {
                let next = input.index(after: j)
                guard next < input.endIndex else { break }
                let e = input[next]
                if !"\"\\$`".contains(e) { value.append("\\") }
                value.append(e)
                j = input.index(after: next)
                continue
            }
            if d == "$" || d == "`" { return .failure(Problem(message: expansionRefused)) }
            value.append(d)
            j = input.index(after: j)
        }
        return .failure(Problem(message: "expected a closing double quote"))
    }

    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first == "_" || first.isASCIILetter else {
            return false
        }
        return s.unicodeScalars.allSatisfy { $0 == "_" || $0.isASCIILetter || ($0 >= "0" && $0 <= "9") }
    }
}

extension Unicode.Scalar {
    var isASCIILetter: Bool { (self >= "a" && self <= "z") || (self >= "A" && self <= "Z") }
}
