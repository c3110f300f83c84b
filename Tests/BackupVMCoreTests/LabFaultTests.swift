import Foundation
import Testing

@testable import BackupVMCore

/// Faults that only real ssh, libvirt and a real guest can show (issue #9's fault suite; the rest run
/// through the hypervisor seam in seconds).
@Suite("lab: faults", .tags(.lab), .serialized)
struct LabFaultTests {
    let tmp = TempDir("labfault")

    /// A lab host's sshd and everything under it (sessions, the commands they run), frozen with
    /// SIGSTOP: the host stops answering without closing a connection (no FIN, no RST).
    final class FrozenHost {
        private(set) var stopped: [pid_t] = []

        static func listener(_ pidFile: String) throws -> pid_t {
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            return try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }

        static func command(of pid: pid_t) -> String {
            ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        init(sshdPidFile: String) throws {
            let listener = try Self.listener(sshdPidFile)
            // The listener first (no new sessions), then its descendants, twice over for any that a
            // session forked meanwhile.
            freeze(listener)
            for _ in 0..<2 { for pid in Self.descendants(of: listener) where !stopped.contains(pid) { freeze(pid) } }
        }

        private func freeze(_ pid: pid_t) { if kill(pid, SIGSTOP) == 0 { stopped.append(pid) } }

        /// Lets every frozen process go on. Safe to call twice.
        func thaw() {
            for pid in stopped { kill(pid, SIGCONT) }
            stopped = []
        }

        deinit { thaw() }

        static func descendants(of root: pid_t) -> [pid_t] {
            var parent: [pid_t: pid_t] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = pid_t(name),
                    let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                    let close = stat.lastIndex(of: ")")
                else { continue }
                // Fields after the command name: state, ppid, ...
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                if fields.count > 1, let ppid = pid_t(fields[1]) { parent[pid] = ppid }
            }
            var found: [pid_t] = []
            var frontier = [root]
            while let next = frontier.popLast() {
                let children = parent.filter { $0.value == next }.map(\.key)
                found += children
                frontier += children
            }
            return found
        }
    }

    /// stderr of a running process, collected on a thread of its own so the test can wait for a line.
    final class StderrTail: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()

        init(_ pipe: Pipe) {
            let handle = pipe.fileHandleForReading
            Thread {
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { return }
                    self.lock.withLock { self.data.append(chunk) }
                }
            }.start()
        }

        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }

        func waitFor(_ fragment: String, timeout: TimeInterval) -> Bool {
            eventually(timeout: timeout) { text.contains(fragment) }
        }
    }

    /// Bytes of the disk images in the VM's partial backups (not the breadcrumb, which is written
    /// before the VM is touched): > 0 once a disk is being copied.
    func partialBytes(_ storage: String, _ vm: String) -> Int {
        let fm = FileManager.default
        let dir = storage + "/" + vm
        var total = 0
        for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where BackupNames.isPartial(name) {
            for file in (try? fm.contentsOfDirectory(atPath: dir + "/" + name)) ?? []
            where file.hasSuffix(".lzo") || file.hasSuffix(".zst") {
                total += ((try? fm.attributesOfItem(atPath: dir + "/" + name + "/" + file)[.size]) as? Int) ?? 0
            }
        }
        return total
    }

    /// A manual run of `backup_vm VM` whose stderr the test follows.
    final class ManualRun {
        let process = Process()
        let stderr: StderrTail

        init(_ vm: String, config: String) throws {
            process.executableURL = URL(fileURLWithPath: Paths.binary("backup_vm"))
            process.arguments = [vm, "--config-dir", config]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            let errPipe = Pipe()
            process.standardError = errPipe
            stderr = StderrTail(errPipe)
            try process.run()
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// The fault suite's promises after a failed run: the VM runs again, nothing partial, the earlier
    /// backup intact and verifying, no file of ours left in the hypervisor's working directory.
    func expectNothingLost(_ lab: Lab, _ vm: String, config: String, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        #expect(
            eventually(timeout: 60) { (try? lab.state("kvm1", vm)) == "running" }, "the VM runs again",
            sourceLocation: sourceLocation)
        #expect(
            BackupCatalog(storage: tmp.path + "/storage").backups(of: vm).count == 1, "only the earlier backup",
            sourceLocation: sourceLocation)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path + "/storage/\(vm)")) ?? []
        #expect(
            !entries.contains(where: BackupNames.isTemporary), "nothing partial: \(entries)",
            sourceLocation: sourceLocation)
        let verify = try backupVM(config, ["verify", vm])
        #expect(verify.status == 0, "the earlier backup verifies: \(verify.out)", sourceLocation: sourceLocation)
        let work = (try? FileManager.default.contentsOfDirectory(atPath: lab.work("kvm1") + "/\(vm)")) ?? []
        #expect(work.isEmpty, "nothing of ours on the hypervisor: \(work)", sourceLocation: sourceLocation)
    }

    /// Two faults of the connection while a disk is copied, on one guest (it boots once per phase):
    /// - the ssh connection is killed (its sshd sessions SIGKILLed: the server side closes);
    /// - the hypervisor stops answering (sshd and its sessions SIGSTOPped: no FIN, no RST), and the
    ///   stream is cut after StallTimeout; it answers again later (the rollback needs it).
    /// Both fail the run with a one-line reason and lose nothing.
    @Test("ssh connection killed mid-transfer; hypervisor stops answering mid-stream")
    func connectionFaultsMidStream() throws {
        let lab = try Lab.require()
        let vm = "stall1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        // 384 MiB, three quarters incompressible: the copy takes seconds, the fault lands inside it.
        try lab.makeGuest("kvm1", vm, raw: 384, start: false)
        let config = lab.config(tmp, schedule: "\(vm) * 3", extraMain: "StallTimeout=5")
        let storage = tmp.path + "/storage"
        let good = try backupVM(config, [vm])
        #expect(good.status == 0, "the earlier good backup: \(good.err)")
        try lab.ssh("kvm1", "virsh start \(vm)")

        // 1. Killed: every sshd session of kvm1 (not its listener) dies while bytes flow.
        #expect(eventually(timeout: 120) { lab.readyCount("kvm1", vm) >= 1 }, "the guest booted")
        let killed = try ManualRun(vm, config: config)
        try #require(eventually(timeout: 180) { partialBytes(storage, vm) > 0 }, "\(killed.stderr.text)")
        let listener = try FrozenHost.listener(lab.dir + "/pids/kvm1.sshd")
        let sessions = FrozenHost.descendants(of: listener).filter { FrozenHost.command(of: $0).hasPrefix("sshd") }
        #expect(!sessions.isEmpty)
        for pid in sessions { kill(pid, SIGKILL) }
        killed.process.waitUntilExit()
        #expect(killed.process.terminationStatus == 1)
        #expect(killed.stderr.text.contains("cannot reach kvm1 over ssh"), "\(killed.stderr.text)")
        try expectNothingLost(lab, vm, config: config)

        // 2. Stops answering: frozen while bytes flow, thawed once the run has given up on the stream.
        #expect(eventually(timeout: 120) { lab.readyCount("kvm1", vm) >= 2 }, "the guest booted again")
        let stalled = try ManualRun(vm, config: config)
        try #require(eventually(timeout: 180) { partialBytes(storage, vm) > 0 }, "\(stalled.stderr.text)")
        let frozen = try FrozenHost(sshdPidFile: lab.dir + "/pids/kvm1.sshd")
        defer { frozen.thaw() }
        #expect(!frozen.stopped.isEmpty)
        let cut = stalled.stderr.waitFor("returning the VM to its prior state", timeout: 120)
        frozen.thaw()
        try #require(cut, "the stalled stream was not cut: \(stalled.stderr.text)")
        stalled.process.waitUntilExit()
        #expect(stalled.process.terminationStatus == 1)
        #expect(stalled.stderr.text.contains("no progress for 5 s (stalled)"), "\(stalled.stderr.text)")
        try expectNothingLost(lab, vm, config: config)
    }
}
