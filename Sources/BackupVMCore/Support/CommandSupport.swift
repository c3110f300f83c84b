import Foundation
import Logging

/// Helpers the executables share: loading the configuration with a readable failure, and setting up
/// logging from it.
public enum CommandSupport {
    /// Loads the configuration or prints every problem (file:line: ...) to stderr and exits 2.
    public static func loadConfiguration(explicitDirectory: String?) -> Configuration {
        let dir = Configuration.resolveDirectory(explicit: explicitDirectory)
        do {
            return try Configuration.load(directory: dir)
        } catch {
            printError("backup_vm: configuration in \(dir) has errors:\n\(error.description)")
            exit(CommandFailure.Status.config.rawValue)
        }
    }

    /// Called first by every executable: a reader that goes away (`backup_vm web1 | tee log`, then
    /// Ctrl-C) makes writes fail with EPIPE instead of killing the process mid-backup with SIGPIPE,
    /// before it could return the VM to its prior state.
    public static func ignoreBrokenPipes() { signal(SIGPIPE, SIG_IGN) }

    /// A line on stderr; a failed write (EPIPE) is ignored, never fatal.
    public static func printError(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    public static func setUpLogging(_ configuration: Configuration, label: String, console: Bool, verbose: Bool)
        -> Logger
    {
        LoggingSetup.bootstrap(
            syslogSocket: configuration.main.syslogSocket, facility: configuration.main.syslogFacility,
            console: console, level: verbose ? .debug : .info)
        return Logger(label: label)
    }
}
