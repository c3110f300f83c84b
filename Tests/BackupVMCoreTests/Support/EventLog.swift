import Foundation

/// The events SpoolTestWorker records: `KIND NS PID JOB VM HOST` per line.
struct WorkerEvent {
    let kind: String
    let ns: Int64
    let pid: Int32
    let job: String
    let vm: String
    let host: String
}

enum WorkerEvents {
    static func read(_ path: String) -> [WorkerEvent] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 6, let ns = Int64(f[1]), let pid = Int32(f[2]) else { return nil }
            return WorkerEvent(kind: f[0], ns: ns, pid: pid, job: f[3], vm: f[4], host: f[5])
        }
    }

    /// Highest number of jobs running at once, overall and per host, from start/end events
    /// (recorded while the job held its slots).
    static func maxConcurrency(_ events: [WorkerEvent]) -> (global: Int, perHost: [String: Int]) {
        var current = 0
        var best = 0
        var hostCurrent: [String: Int] = [:]
        var hostBest: [String: Int] = [:]
        for e in events.filter({ $0.kind == "start" || $0.kind == "end" }).sorted(by: { $0.ns < $1.ns }) {
            let delta = e.kind == "start" ? 1 : -1
            current += delta
            hostCurrent[e.host, default: 0] += delta
            best = max(best, current)
            hostBest[e.host] = max(hostBest[e.host] ?? 0, hostCurrent[e.host]!)
        }
        return (best, hostBest)
    }
}
