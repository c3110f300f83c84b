import Foundation

/// A process's state letter from /proc (R, S, Z, ...): a killed child whose parent died stays a zombie
/// until init reaps it, and kill(pid, 0) still finds it.
enum ProcessState {
    static func state(_ pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
    }

    static func isRunning(_ pid: Int32) -> Bool {
        guard let s = state(pid) else { return false }
        return s != "Z" && s != "X"
    }
}
