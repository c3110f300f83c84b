import Foundation
import Testing

@testable import BackupVMCore

/// Issue #19, item 20: a restore waits only for what it needs. Its disks are written at once (each
/// stream a thread of its own, RestoreStreams at a time), a failing one cuts the others instead of
/// waiting for them, its commands share one ssh connection instead of a handshake each, and the
/// stored images are checked while the hypervisors are asked. The real BackupRestorer runs its real
/// scripts (bash, lzop, cksum) through a stand-in ssh (RestoreSandbox), with stubs that show what
/// ran at the same time; no assertion is on a duration.
@Suite("restore: nothing waited for that need not be", .tags(.spool))
struct RestoreSpeedTests {
    static let contents = [Data(repeating: 0x61, count: 300_000), Data(repeating: 0x62, count: 200_000)]

    /// kvm1 with web01 shut off and a backup of its two file disks (the second at `second`, below the
    /// sandbox).
    func sandbox(second: String = "images/web01-vdb.raw") throws -> (RestoreSandbox, [String]) {
        let s = try RestoreSandbox()
        s.setState("shut off", of: s.vm)
        let paths = [s.sandbox.sandbox + "/images/web01-vda.raw", s.sandbox.sandbox + "/" + second]
        s.dir.write("sandbox/images/web01-vda.raw", "vda as it is")
        let disks = zip(["vda", "vdb"], paths).map { DomainDisk(target: $0, kind: .file, format: .raw, source: $1) }
        try s.storeBackup(zip(disks, Self.contents).map { ($0, nil, $1) })
        return (s, paths)
    }

    /// A decompressor on the hypervisor that marks itself running in `streams/`, waits (10 s at
    /// most) until another one runs too, notes whether it saw one, decompresses, and (when it saw one)
    /// stays marked until the other has seen it too. One after the other, each sees none.
    static let meetingLzop = """
        #!/bin/bash
        d=streams; mkdir -p "$d"; : > "$d/running.$$"; seen=alone
        n() { ls "$d" | grep -c "^$1\\." || true; }
        for i in $(seq 1 100); do [ "$(n running)" -ge 2 ] && { seen=together; break; }; sleep 0.1; done
        echo "$seen" >> "$d/seen"; : > "$d/saw.$$"; /usr/bin/lzop "$@"; rc=$?
        # Running until the other one has seen this one too.
        if [ "$seen" = together ]; then
          for i in $(seq 1 100); do [ "$(n saw)" -ge 2 ] && break; sleep 0.1; done
        fi
        rm -f "$d/running.$$"; exit $rc
        """

    @Test("two disks are written at once: each stream sees the other running (one after the other, neither would)")
    func disksWrittenAtOnce() throws {
        let (s, paths) = try sandbox()
        try SandboxHost.executable(s.dir.path + "/stubs/lzop", Self.meetingLzop)
        _ = try s.restorer.restore(.init(vm: s.vm))
        let seen = try String(contentsOfFile: s.sandbox.sandbox + "/streams/seen", encoding: .utf8)
        #expect(seen.split(separator: "\n") == ["together", "together"], "\(seen)")
        for (path, content) in zip(paths, Self.contents) {
            #expect(FileManager.default.contents(atPath: path) == content, "\(path) restored")
        }
        #expect(s.messages.contains("all 2 disks written and checked"))
    }

    @Test(
        "one disk fails at once while the other is still being written: that stream is cut, not waited for; both as they were"
    )
    func firstFailureCutsTheOthers() throws {
        // vdb goes below a plain file, so its directory cannot be made: its stream fails at once.
        let (s, paths) = try sandbox(second: "images/not-a-directory/web01-vdb.raw")
        s.dir.write("sandbox/images/not-a-directory", "a file")
        // vda's decompressor marks itself running and holds its stream until released (20 s at most),
        // then notes that it got to the end; vdb's directory is asked for only once vda's stream runs.
        try SandboxHost.executable(
            s.dir.path + "/stubs/lzop",
            """
            #!/bin/bash
            /bin/mkdir -p streams; : > streams/running.$$
            for i in $(seq 1 200); do [ -e release ] && break; sleep 0.1; done
            : > finished.$$; exec /usr/bin/lzop "$@"
            """)
        try SandboxHost.executable(
            s.dir.path + "/stubs/mkdir",
            """
            #!/bin/bash
            case "$*" in *not-a-directory*)
              for i in $(seq 1 100); do ls streams/running.* >/dev/null 2>&1 && break; sleep 0.1; done ;;
            esac
            exec /bin/mkdir "$@"
            """)
        defer { s.dir.write("sandbox/release", "") }
        #expect {
            _ = try s.restorer.restore(.init(vm: s.vm))
        } throws: { error in
            let text = "\(error)"
            return text.contains("writing vdb to") && !text.contains("aborted")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: s.sandbox.sandbox)
        #expect(!left.contains { $0.hasPrefix("finished.") }, "vda's stream was cut, not run to its end: \(left)")
        #expect(FileManager.default.contents(atPath: paths[0]) == Data("vda as it is".utf8))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: s.sandbox.sandbox + "/images").sorted()
                == ["not-a-directory", "web01-vda.raw"])
        #expect(s.state(of: s.vm) == "shut off" && s.definedXML(s.vm) == nil)
    }

    @Test("every command of a restore goes over one shared ssh connection, which is closed at the end")
    func oneConnection() throws {
        let (s, _) = try sandbox()
        _ = try s.restorer.restore(.init(vm: s.vm))
        let calls = try String(contentsOfFile: s.sandbox.sshLog, encoding: .utf8).split(separator: "\n")
        let paths = Set(calls.map { $0.split(separator: " ").first { $0.hasPrefix("ControlPath=") } })
        #expect(calls.count > 4, "the questions, two streams, the swaps, the define: \(calls)")
        #expect(paths.count == 1 && paths.first! != nil, "one ControlPath for all: \(paths)")
        #expect(calls.filter { $0.contains("-O exit") }.count == 1, "closed once: \(calls)")
    }

    @Test("the stored images are read and checked while the hypervisors are asked, not after")
    func imagesCheckedWhileAsking() throws {
        let (s, _) = try sandbox()
        // The question about web01 waits (10 s at most) for the images to be checked, and notes whether
        // they were.
        let sawCheck = CapturedMessages()
        let messages = s.messages
        let query: VMLocator.Query = { host, vm throws(RemoteError) in
            let checked = eventually(timeout: 10) { messages.contains("stored images checked") }
            sawCheck.append("\(checked)")
            return try VMLocator.virshQuery(host, vm)
        }
        _ = try s.restorer(locatorQuery: query).restore(.init(vm: s.vm))
        #expect(sawCheck.all.first == "true", "checked while kvm1 was asked: \(sawCheck.all)")
    }

    @Test("a VM running without --force is refused as before, also while its images are being checked")
    func refusalStillFirst() throws {
        let (s, _) = try sandbox()
        s.setState("running", of: s.vm)
        let file = s.backupDirectory + "/vda.raw.lzo"
        var stored = try Data(contentsOf: URL(fileURLWithPath: file))
        stored[stored.count / 2] ^= 0x01
        try stored.write(to: URL(fileURLWithPath: file))
        #expect(throws: RestoreError.liveVM(name: s.vm, state: .running, host: "kvm1")) {
            _ = try s.restorer.restore(.init(vm: s.vm))
        }
        #expect(s.changes.isEmpty, "\(s.changes)")
    }

    @Test("RestoreStreams: 4 unless set, 1-16, anything else an error naming the file and line")
    func restoreStreamsKey() throws {
        var f = ConfigFixture()
        #expect(try Configuration.load(directory: f.materialize()).main.restoreStreams == 4)
        f.main += "\nRestoreStreams=1"
        #expect(try Configuration.load(directory: f.materialize()).main.restoreStreams == 1)
        for bad in ["0", "17", "two"] {
            f.main = f.main.replacing(#/RestoreStreams=.*/#, with: "RestoreStreams=\(bad)")
            let d = f.diagnostics()
            #expect(
                d.count == 1 && "\(d[0])".contains("backup_vm.d/backup_vm.conf:6: RestoreStreams='\(bad)'")
                    && "\(d[0])".contains("expected a whole number from 1 to 16"), "\(d)")
        }
    }
}
