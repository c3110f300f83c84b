/// One problem found in a configuration file: where it is, what was there, what was expected.
/// The description reads `FILE:LINE: KEY='VALUE': expected ...` so an operator can jump to it.
public struct ConfigDiagnostic: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    /// 1-based; 0 when the problem concerns the whole file (e.g. it is missing).
    public let line: Int
    public let key: String?
    public let value: String?
    public let message: String

    public init(file: String, line: Int, key: String? = nil, value: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.value = value
        self.message = message
    }

    public var description: String {
        var s = line > 0 ? "\(file):\(line): " : "\(file): "
        if let key {
            s += value.map { "\(key)='\($0)': " } ?? "\(key): "
        } else if let value {
            s += "'\(value)': "
        }
        return s + message
    }
}

/// Every problem found while loading the configuration; loading reports all of them at once so an
/// operator fixes a file in one pass instead of one error per run.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let diagnostics: [ConfigDiagnostic]

    public init(_ diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }

    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}
