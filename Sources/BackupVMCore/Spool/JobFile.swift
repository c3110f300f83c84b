import Foundation

/// What a job asks for. A job names a VM and nothing else the configuration does not already allow:
/// no host, no path, no command. A one-line `vm=NAME` file is a complete job.
public struct JobRequest: Sendable, Equatable {
    public var vm: String
    public var requestedBy: String?
    public var created: String?
    public var kind: JobKind

    public init(vm: String, requestedBy: String? = nil, created: String? = nil, kind: JobKind = .backup) {
        self.vm = vm
        self.requestedBy = requestedBy
        self.created = created
        self.kind = kind
    }

    public func serialized() -> String {
        var s = "vm=\(vm)\n"
        if kind != .backup { s += "kind=\(kind.rawValue)\n" }
        if let requestedBy { s += "requested_by=\(requestedBy)\n" }
        if let created { s += "created=\(created)\n" }
        return s
    }
}

/// How a finished job ended; appended to the job file before it moves to done/ or failed/.
public struct JobResult: Sendable, Equatable {
    public enum Status: String, Sendable, Codable { case done, failed }
    public var status: Status
    public var reason: String?
    public var started: Date?
    public var finished: Date
    public var host: String?
    public var bytes: Int64?
    public var backupID: String?
    /// Problems after the backup was committed (keep-on-host, rotation): the backup is good, the job
    /// is done, and the operator is told what else went wrong.
    public var warning: String?
    public var workerPID: Int32

    public init(
        status: Status, reason: String? = nil, started: Date? = nil, finished: Date = Date(),
        host: String? = nil, bytes: Int64? = nil, backupID: String? = nil, warning: String? = nil,
        workerPID: Int32 = ProcessInfo.processInfo.processIdentifier
    ) {
        self.status = status
        self.reason = reason
        self.started = started
        self.finished = finished
        self.host = host
        self.bytes = bytes
        self.backupID = backupID
        self.warning = warning
        self.workerPID = workerPID
    }

    /// The result block, one `key=value` per line. Reasons are folded onto one line so the job file
    /// stays line-oriented whatever an error message contains.
    public func serialized() -> String {
        var s = "# result\nstatus=\(status.rawValue)\n"
        if let reason { s += "reason=\(JobFile.oneLine(reason))\n" }
        // Milliseconds: the records are also how concurrency is audited after the fact.
        if let started { s += "started=\(Timestamps.isoPrecise(started))\n" }
        s += "finished=\(Timestamps.isoPrecise(finished))\n"
        if let host { s += "host=\(host)\n" }
        if let bytes { s += "bytes=\(bytes)\n" }
        if let backupID { s += "backup=\(backupID)\n" }
        if let warning { s += "warning=\(JobFile.oneLine(warning))\n" }
        s += "worker_pid=\(workerPID)\n"
        return s
    }
}

/// A job file as read from the spool: the request, and the records later appended to it
/// (recoveries, the result).
public struct JobFile: Sendable {
    public var request: JobRequest
    public var recoveries: Int
    /// Set when the file already carries a result block (a worker died between writing it and moving
    /// the file): recovery then only finishes the move.
    public var resultStatus: JobResult.Status?
    public var resultFields: [String: String]

    public static let maxSize = 64 * 1024
    /// What a job file may grow to once this tool appended its records (a `recovered=` line per
    /// recovery, MaxRecoveries ≤ 100, and the result block; every reason in them is one line of at most
    /// ReasonText.limit bytes): a finished job's record is always read back.
    public static let maxRecordSize = maxSize + 128 * 1024
    static let requestKeys: Set<String> = ["vm", "requested_by", "created", "kind"]
    static let recordKeys: Set<String> = [
        "status", "reason", "started", "finished", "host", "bytes", "backup", "warning",
        "worker_pid", "recovered",
    ]

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Parses a job file. Anything unexpected is an error with the line and what was expected, because
    /// a job that cannot be understood must be failed visibly, never guessed at.
    /// `kind=`: absent is a backup (every job file written before kinds existed).
    static func parseKind(_ raw: String?) throws(ParseError) -> JobKind {
        guard let raw else { return .backup }
        guard let kind = JobKind(rawValue: raw) else {
            throw ParseError(
                description: "kind='\(oneLine(String(raw.prefix(40))))': expected backup, restore-test or verify")
        }
        return kind
    }

    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> JobFile {
        guard bytes.count <= maxRecordSize else {
            throw ParseError(
                description: "job file is \(bytes.count) bytes; expected a small text file (at most \(maxSize) bytes)")
        }
        guard !bytes.contains(0), let text = String(validating: bytes, as: UTF8.self) else {
            throw ParseError(description: "job file is not UTF-8 text; expected lines like 'vm=NAME'")
        }
        var fields: [String: String] = [:]
        var recoveries = 0
        // The result keys are ours: they are accepted only inside the result block we append.
        var inResult = false
        for (i, raw) in TextLines.split(text).enumerated() {
            // A job written on Windows (CRLF) is the same job; a lone CR would hide lines from this parser.
            if let problem = TextLines.strayBreakProblem(in: raw) {
                throw ParseError(description: "line \(i + 1): \(problem)")
            }
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line == "# result" {
                inResult = true
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ParseError(
                    description:
                        "line \(i + 1): '\(oneLine(String(line.prefix(80))))': expected key=value, e.g. vm=NAME")
            }
            let key = String(line[..<eq]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            guard requestKeys.contains(key) || key == "recovered" || (inResult && recordKeys.contains(key)) else {
                let shown = oneLine(String(key.prefix(40)))
                throw ParseError(
                    description: "line \(i + 1): unknown key '\(shown)'; expected vm=, kind=, requested_by= or created="
                )
            }
            if key == "recovered" {
                recoveries += 1
                continue
            }
            if requestKeys.contains(key), fields[key] != nil {
                throw ParseError(description: "line \(i + 1): key '\(key)' appears twice; expected it once")
            }
            fields[key] = value
        }
        guard let vm = fields["vm"] else {
            throw ParseError(description: "no vm= line; expected a job like 'vm=NAME'")
        }
        guard SafeName.isValidVMName(vm) else {
            throw ParseError(description: "vm='\(oneLine(String(vm.prefix(80))))': expected \(SafeName.vmExpectation)")
        }
        let kind = try parseKind(fields["kind"])
        let status = fields["status"].flatMap(JobResult.Status.init(rawValue:))
        var results = fields
        for k in requestKeys { results.removeValue(forKey: k) }
        return JobFile(
            request: JobRequest(vm: vm, requestedBy: fields["requested_by"], created: fields["created"], kind: kind),
            recoveries: recoveries, resultStatus: status, resultFields: results)
    }

    /// One line, capped, without control characters (ReasonText).
    static func oneLine(_ s: String) -> String { ReasonText.oneLine(s) }
}

/// Timestamps in job files, manifests and backup IDs.
public enum Timestamps {
    public static func iso(_ date: Date) -> String {
        date.formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: false, timeZone: TimeZone(identifier: "UTC")!))
    }

    public static func isoPrecise(_ date: Date) -> String {
        date.formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
    }

    /// Parses ISO 8601 with or without fractional seconds.
    public static func parseISO(_ s: String) -> Date? {
        let utc = TimeZone(identifier: "UTC")!
        return (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: utc).parse(s))
            ?? (try? Date.ISO8601FormatStyle(timeZone: utc).parse(s))
    }

    /// `20261127T221500Z`: sortable, safe in paths; backup directory names and job names use it.
    public static func compact(_ date: Date) -> String {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// nil for anything that is not exactly `YYYYMMDDTHHMMSSZ` in ASCII digits with valid fields: names
    /// in the storage folder are input (a directory named with other digits must not crash `list`).
    public static func parseCompact(_ s: Substring) -> Date? {
        guard s.utf8.count == 16, s.hasSuffix("Z"), s.dropFirst(8).first == "T" else { return nil }
        let digits = s.utf8.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.map { Int($0) - 48 }
        guard digits.count == 14 else { return nil }
        func n(_ from: Int, _ len: Int) -> Int { digits[from..<(from + len)].reduce(0) { $0 * 10 + $1 } }
        let (month, day, hour, minute, second) = (n(4, 2), n(6, 2), n(8, 2), n(10, 2), n(12, 2))
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61,
            let utc = TimeZone(identifier: "UTC")
        else { return nil }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = utc
        return cal.date(
            from: DateComponents(year: n(0, 4), month: month, day: day, hour: hour, minute: minute, second: second))
    }
}
