import Foundation
import Testing

@testable import BackupVMCore

extension Tag {
    /// Pure logic, no processes, no network: fast.
    @Tag static var unit: Self
    /// Real files, real flock, real processes (worker processes, the daemon binary), on this machine.
    @Tag static var spool: Self
}

/// A fresh directory under /tmp, removed when the test's scope ends.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "t") {
        let base = FileManager.default.temporaryDirectory.path + "/backup_vm-tests"
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base + "/\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ text: String) {
        let full = path + "/" + relative
        try! FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        try! text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    func remove(_ relative: String) { try? FileManager.default.removeItem(atPath: path + "/" + relative) }
}

/// A configuration directory with valid defaults that a test then breaks in one place.
struct ConfigFixture {
    let dir: TempDir
    var main = """
        HostServers="kvm1 kvm2"
        BackupStorage=storage
        BackupHours=22-04
        MaxBackupThreads=3
        MaxBackupThreadsForHost=2
        """
    var schedule = """
        # comment
        web01   Mon-Fri   7   yes
        db01    *         2
        """
    var defaultProfile = """
        Mode=cold
        WorkPath=/var/lib/backup_vm
        """
    var profiles: [String: String] = [:]

    init(_ label: String = "cfg") { dir = TempDir(label) }

    func materialize() -> String {
        dir.write("backup_vm.d/backup_vm.conf", main + "\n")
        dir.write("backup_vm.d/sheduler.conf", schedule + "\n")
        dir.write("vmsnapshot.d/default", defaultProfile + "\n")
        for (name, text) in profiles { dir.write("vmsnapshot.d/\(name)", text + "\n") }
        return dir.path
    }

    /// Loads the configuration and returns its diagnostics (empty when valid).
    func diagnostics() -> [ConfigDiagnostic] {
        let path = materialize()
        do {
            _ = try Configuration.load(directory: path)
            return []
        } catch {
            return error.diagnostics
        }
    }
}

/// The package root and the built executables (scripts/test builds them before running tests).
enum Paths {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["BACKUP_VM_BIN_DIR"], !dir.isEmpty { return dir }
        return packageRoot + "/.build/debug"
    }

    static func binary(_ name: String) -> String {
        let path = binDir + "/" + name
        precondition(
            FileManager.default.isExecutableFile(atPath: path),
            "\(path) is missing: build first (swift build --build-tests, as scripts/test does)")
        return path
    }
}

/// A child process this test started and must stop, by pid.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let stdout = Pipe()
    let stderr = Pipe()
    private let outputLock = NSLock()
    private var out = Data()
    private var err = Data()

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        stdout.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            self?.outputLock.withLock { self?.out.append(d) }
        }
        stderr.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            self?.outputLock.withLock { self?.err.append(d) }
        }
        try process.run()
    }

    /// After exit: stop the handlers and read what is still in the pipes, so no output is lost.
    private func drainOutput() {
        // Handlers are removed outside the lock: a handler in flight may be waiting for it.
        stdout.fileHandleForReading.readabilityHandler = nil
        stderr.fileHandleForReading.readabilityHandler = nil
        let restOut = stdout.fileHandleForReading.readDataToEndOfFile()
        let restErr = stderr.fileHandleForReading.readDataToEndOfFile()
        outputLock.withLock {
            out.append(restOut)
            err.append(restErr)
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var standardOutput: String { outputLock.withLock { String(decoding: out, as: UTF8.self) } }
    var standardError: String { outputLock.withLock { String(decoding: err, as: UTF8.self) } }

    func signal(_ sig: Int32) { if process.isRunning { kill(pid, sig) } }

    /// Waits up to `timeout` seconds; true when it exited.
    @discardableResult
    func wait(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else { return false }
        process.waitUntilExit()
        drainOutput()
        return true
    }

    /// Stops it for good: TERM, then KILL.
    func stop() {
        guard process.isRunning else { return }
        signal(SIGTERM)
        if !wait(timeout: 10) {
            signal(SIGKILL)
            wait(timeout: 10)
        }
    }

    deinit { stop() }
}

/// Runs a command to completion and returns (status, stdout, stderr).
@discardableResult
func runTool(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    timeout: TimeInterval = 120
) throws -> (status: Int32, out: String, err: String) {
    let child = try ChildProcess(executable, arguments, environment: environment)
    guard child.wait(timeout: timeout) else {
        child.stop()
        throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(executable) timed out"])
    }
    return (child.process.terminationStatus, child.standardOutput, child.standardError)
}

/// Polls `condition` until it holds or `timeout` passes. Tests wait on outcomes, never on durations.
func eventually(timeout: TimeInterval = 60, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}
