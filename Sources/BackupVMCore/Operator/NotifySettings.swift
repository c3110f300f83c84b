/// backup_vm.conf's NotifyCommand, NotifyOn and NotifyTimeout.
public struct NotifySettings: Sendable, Equatable {
    public enum When: String, CaseIterable, Sendable {
        case failure, always
    }

    /// A command line for `/bin/sh -c` (the configuration is root's, like a cron line).
    public var command: String
    public var on: When
    /// After this many seconds the notifier's whole process group is killed.
    public var timeoutSeconds: Int

    public init(command: String, on: When = .failure, timeoutSeconds: Int = 60) {
        self.command = command
        self.on = on
        self.timeoutSeconds = timeoutSeconds
    }

    public func wants(_ status: JobResult.Status) -> Bool { on == .always || status == .failed }

    static func parse(_ r: inout AssignmentReader) -> NotifySettings? {
        let on: When = r.choice("NotifyOn", default: .failure)
        let timeout = r.integer("NotifyTimeout", in: 1...3600, default: 60)
        guard let command = r.string("NotifyCommand") else {
            for key in ["NotifyOn", "NotifyTimeout"] where r.has(key) {
                r.fail(key, "set without NotifyCommand; expected NotifyCommand=COMMAND too")
            }
            return nil
        }
        return NotifySettings(command: command, on: on, timeoutSeconds: timeout)
    }
}
