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
            FileHandle.standardError.write(
                Data("backup_vm: configuration in \(dir) has errors:\n\(error.description)\n".utf8))
            exit(2)
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
