import Foundation
import Logging

/// swift-log handler that sends every record to syslog through a SyslogWriter.
public struct SyslogLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let writer: SyslogWriter
    let label: String

    public init(label: String, writer: SyslogWriter) {
        self.label = label
        self.writer = writer
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        writer.send(
            severity: SyslogLogHandler.severity(event.level),
            message: LogFormat.line(
                level: event.level, message: event.message,
                metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }

    static func severity(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }
}

/// A manual run (and a daemon in the foreground) also writes to stderr, one line per record.
public struct ConsoleLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let text = LogFormat.line(
            level: event.level, message: event.message,
            metadata: metadata.merging(event.metadata ?? [:]) { $1 })
        // write(2), not FileHandle.write, which traps when the reader is gone (EPIPE): a manual run
        // piped into `tee` must survive Ctrl-C long enough to return the VM to its prior state.
        // Above a manual run's progress line, when stderr is a terminal.
        ConsoleStatusLine.shared.printLine("\(Timestamps.isoPrecise(Date())) \(text)")
    }
}

enum LogFormat {
    static func line(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata) -> String {
        var s = "\(level.rawValue): \(message)"
        for key in metadata.keys.sorted() { s += " \(key)=\(metadata[key]!)" }
        return s
    }
}

/// Sets up logging once per process: syslog always, the console too when asked (manual runs).
public enum LoggingSetup {
    public static func bootstrap(syslogSocket: String, facility: SyslogFacility, console: Bool, level: Logger.Level) {
        let writer = SyslogWriter(socketPath: syslogSocket, facility: facility)
        LoggingSystem.bootstrap { label in
            var syslog = SyslogLogHandler(label: label, writer: writer)
            syslog.logLevel = level
            guard console else { return syslog }
            var stderr = ConsoleLogHandler()
            stderr.logLevel = level
            return MultiplexLogHandler([syslog, stderr])
        }
    }
}
