import Foundation
import Logging

/// Errors of the backup pipeline, each telling the operator what to do.
public enum PipelineError: Error, CustomStringConvertible, Sendable {
    case unavailable(String)

    public var description: String {
        switch self {
        case .unavailable(let what): return what
        }
    }
}

/// The real backup pipeline (locate, inspect, freeze, transfer, commit, rotate) over ssh.
/// The transfer and snapshot steps are not built yet: until they are, every backup fails with that
/// reason (and the job lands in failed/), so nothing ever reports a backup that was not made.
public struct BackupPipeline: BackupExecutor {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func locate(vm: String) throws -> String {
        throw PipelineError.unavailable("cannot back up '\(vm)': this build of backup_vm has no backup pipeline yet (locate/snapshot/transfer are not implemented)")
    }

    public func backup(vm: String, host: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw PipelineError.unavailable("cannot back up '\(vm)': this build of backup_vm has no backup pipeline yet")
    }

    public func recover(vm: String, jobName: String) throws -> String {
        // Nothing of the pipeline can have run, so nothing is left behind on a host.
        "no pipeline step had run; nothing to clean up"
    }
}
