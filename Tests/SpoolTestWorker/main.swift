// A worker process for the multi-process spool tests: the real WorkerPool, Spool, SlotLocks and
// OrphanRecovery, with a scripted executor instead of the ssh pipeline. It records every job start,
// end and recovery in an events file (O_APPEND, one line per event) that the tests analyse.
//
//   SpoolTestWorker --spool DIR --events FILE --hosts FILE [--max-global N] [--max-host M]
//                   [--delay-ms MS] [--slow-prefix P --slow-ms MS] [--exit-when-idle] [--rescan S]
//   SpoolTestWorker --produce --spool DIR --hosts FILE   (the producer: one job per VM in FILE, in order,
//                   through Spool.enqueue, the same path as `backup_vm enqueue`; prints the job names)
//   SpoolTestWorker --produce --pace-ms MS --events FILE ...   (the same, one job every MS ms, each
//                   recorded as `enqueued NS PID NAME` right after its rename into new/: the claim
//                   latency benchmark, scripts/bench-operator)
// hosts FILE: lines `VM HOST`. Unknown VMs fail to locate, as on real hypervisors.
import BackupVMCore
import Foundation
import Logging

struct Options {
    var spool = ""
    var events = ""
    var hosts = ""
    var maxGlobal = 3
    var maxHost = 2
    var delayMs = 0
    var slowPrefix: String?
    var slowMs = 0
    var exitWhenIdle = false
    var rescan = 1.0
    var produce = false
    var paceMs = 0
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--spool": o.spool = args.next()!
        case "--events": o.events = args.next()!
        case "--hosts": o.hosts = args.next()!
        case "--max-global": o.maxGlobal = Int(args.next()!)!
        case "--max-host": o.maxHost = Int(args.next()!)!
        case "--delay-ms": o.delayMs = Int(args.next()!)!
        case "--slow-prefix": o.slowPrefix = args.next()!
        case "--slow-ms": o.slowMs = Int(args.next()!)!
        case "--exit-when-idle": o.exitWhenIdle = true
        case "--rescan": o.rescan = Double(args.next()!)!
        case "--produce": o.produce = true
        case "--pace-ms": o.paceMs = Int(args.next()!)!
        default:
            FileHandle.standardError.write(Data("SpoolTestWorker: unknown argument \(a)\n".utf8))
            exit(64)
        }
    }
    return o
}

/// Appends one line to the events file; O_APPEND makes each short write land whole.
final class EventLog: @unchecked Sendable {
    let fd: Int32
    init(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "cannot open events file \(path)")
    }
    func record(_ kind: String, _ fields: String) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ns = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        let line = "\(kind) \(ns) \(getpid()) \(fields)\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }
}

struct ScriptedExecutor: BackupExecutor {
    let hosts: [String: String]
    let events: EventLog
    let delayMs: Int
    let slowPrefix: String?
    let slowMs: Int

    struct NotFound: Error, CustomStringConvertible {
        let vm: String
        var description: String { "VM '\(vm)' not found on any host (scripted)" }
    }

    func locate(vm: String) throws -> String {
        guard let host = hosts[vm] else { throw NotFound(vm: vm) }
        return host
    }

    func backup(
        vm: String, host: String, jobName: String, abort: AbortFlag, progress: ProgressReporter?
    ) throws -> BackupReport {
        // Recorded while the job holds its global, host and VM slots.
        events.record("start", "\(jobName) \(vm) \(host)")
        let ms = slowPrefix.map { vm.hasPrefix($0) } == true ? slowMs : delayMs
        if ms > 0 { usleep(useconds_t(ms * 1000)) }
        events.record("end", "\(jobName) \(vm) \(host)")
        return BackupReport(host: host, backupID: nil, bytes: 0)
    }

    func verify(vm: String, jobName: String, abort: AbortFlag) throws -> BackupReport {
        throw VerifyFailure("the spool test worker runs no verify jobs")
    }

    func recover(vm: String, jobName: String) throws -> String {
        events.record("recover", "\(jobName) \(vm) -")
        return "scripted cleanup"
    }
}

let options = parseOptions()
LoggingSystem.bootstrap { label in
    var h = ConsoleLogHandler()
    h.logLevel = .warning
    return h
}
let logger = Logger(label: "SpoolTestWorker")
func readHostMap(_ path: String) -> [String: String] {
    var map: [String: String] = [:]
    if let text = try? String(contentsOfFile: path, encoding: .utf8) {
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2 { map[String(f[0])] = String(f[1]) }
        }
    }
    return map
}
let hostMap = readHostMap(options.hosts)
if options.produce {
    let spool = Spool(root: options.spool)
    try spool.prepare()
    let order = (try String(contentsOfFile: options.hosts, encoding: .utf8)).split(separator: "\n").compactMap {
        $0.split(separator: " ").first
    }
    var out = ""
    let paced = options.paceMs > 0 ? EventLog(path: options.events) : nil
    for vm in order {
        let name = try spool.enqueue(JobRequest(vm: String(vm), requestedBy: "producer"))
        out += name + "\n"
        if let paced {
            paced.record("enqueued", name)
            usleep(useconds_t(options.paceMs * 1000))
        }
    }
    FileHandle.standardOutput.write(Data(out.utf8))
    exit(0)
}
let events = EventLog(path: options.events)
let executor = ScriptedExecutor(
    hosts: hostMap, events: events, delayMs: options.delayMs,
    slowPrefix: options.slowPrefix, slowMs: options.slowMs)
let spool = Spool(root: options.spool)
try spool.prepare()
let runner = JobRunner(
    locks: spool.locks, maxGlobal: options.maxGlobal, maxPerHost: options.maxHost,
    executor: executor, isKnownVM: { hostMap[$0] != nil || $0.hasPrefix("lost") }, logger: logger)
let recovery = OrphanRecovery(spool: spool, executor: executor, maxRecoveries: 3, logger: logger)
let pool = WorkerPool(
    spool: spool, runner: runner, recovery: recovery,
    settings: WorkerPoolSettings(
        maxGlobal: options.maxGlobal, maxPerHost: options.maxHost,
        rescanInterval: options.rescan, exitWhenIdle: options.exitWhenIdle),
    logger: logger)
let signals = SignalWatcher(channel: pool.channel)
events.record("worker-start", "- - -")
await pool.run()
events.record("worker-exit", "- - -")
withExtendedLifetime(signals) {}
