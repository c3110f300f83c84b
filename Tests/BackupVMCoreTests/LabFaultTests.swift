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

        init(sshdPidFile: String) throws {
            let text = try String(contentsOfFile: sshdPidFile, encoding: .utf8)
            let listener = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
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

    /// Cut after StallTimeout; the VM runs again once the host answers; nothing partial or left over;
    /// the earlier backup intact.
    @Test("hypervisor stops answering mid-stream (sshd and its sessions SIGSTOPped)")
    func hypervisorStopsAnswering() throws {
        let lab = try Lab.require()
        let vm = "stall1"
        lab.removeGuest(vm)
        defer { lab.removeGuest(vm) }
        // 256 MiB, three quarters incompressible: the copy takes seconds, the freeze lands inside it.
        try lab.makeGuest("kvm1", vm, raw: 256, start: false)
        let config = lab.config(tmp, schedule: "\(vm) * 3", extraMain: "StallTimeout=5")
        let good = try backupVM(config, [vm])
        #expect(good.status == 0, "the earlier good backup: \(good.err)")
        try lab.ssh("kvm1", "virsh start \(vm)")
        #expect(eventually(timeout: 120) { lab.readyCount("kvm1", vm) >= 1 }, "the guest booted")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Paths.binary("backup_vm"))
        process.arguments = [vm, "--config-dir", config]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errPipe = Pipe()
        process.standardError = errPipe
        let stderr = StderrTail(errPipe)
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // The VM is off and its disk is being copied: the host stops answering.
        try #require(stderr.waitFor("shut down", timeout: 180), "\(stderr.text)")
        let frozen = try FrozenHost(sshdPidFile: lab.dir + "/pids/kvm1.sshd")
        defer { frozen.thaw() }
        #expect(!frozen.stopped.isEmpty)
        let cut = stderr.waitFor("returning the VM to its prior state", timeout: 120)
        // The host answers again (as a hung host that recovers would): the rollback can proceed.
        frozen.thaw()
        try #require(cut, "the stalled stream was not cut: \(stderr.text)")
        process.waitUntilExit()

        #expect(process.terminationStatus == 1)
        #expect(stderr.text.contains("no progress for 5 s (stalled)"), "\(stderr.text)")
        #expect(eventually(timeout: 60) { (try? lab.state("kvm1", vm)) == "running" }, "the VM runs again")
        let catalog = BackupCatalog(storage: tmp.path + "/storage")
        #expect(catalog.backups(of: vm).count == 1, "only the earlier backup")
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path + "/storage/\(vm)")) ?? []
        #expect(!entries.contains(where: BackupNames.isTemporary), "nothing partial: \(entries)")
        let verify = try backupVM(config, ["verify", vm])
        #expect(verify.status == 0, "the earlier backup verifies: \(verify.out) \(verify.err)")
        let work = (try? FileManager.default.contentsOfDirectory(atPath: lab.work("kvm1") + "/\(vm)")) ?? []
        #expect(work.isEmpty, "no staging or temporary file of ours on the hypervisor: \(work)")
    }
}
