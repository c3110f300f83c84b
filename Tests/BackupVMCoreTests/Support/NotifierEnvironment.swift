import Foundation

/// The `BACKUP_VM_*` variables a test notifier wrote (`env | grep ^BACKUP_VM_ | sort > FILE`).
func notifierEnvironment(_ path: String) -> [String: String] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    var env: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        env[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
    }
    return env
}
