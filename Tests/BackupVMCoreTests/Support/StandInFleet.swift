import Foundation

@testable import BackupVMCore

/// Hypervisors that are this machine, for running the real `backup_vmd` without a lab: a stand-in
/// `ssh` first on the daemon's PATH runs every remote script here with bash, with a `virsh` stub that
/// knows on which host each VM is defined (shut off, one raw file disk in `disks/`) and a `dd` wrapper
/// that records each disk copy, the one step of a job that runs under all its slots, as `start` and
/// `end` lines in `events` (WorkerEvents reads them; the pid field carries the daemon's tag, the job
/// field the VM, one job per VM). A VM's copy waits at its gate (`gates/VM`, a FIFO it reads) until
/// the test releases it (opens it for writing; no polling). Everything else is real: the daemon, its
/// pool, locks and pipeline, lzop, cksum, the commit into `storage/`.
final class StandInFleet: @unchecked Sendable {
    let dir = TempDir("fleet")
    let vms: [(vm: String, host: String)]

    var configDir: String { dir.path + "/config" }
    var spool: Spool { Spool(root: dir.path + "/spool") }
    var eventsPath: String { dir.path + "/events" }
    var storage: String { dir.path + "/storage" }

    /// `copyPauseMs`: how long each disk copy takes beyond the copy itself (so that jobs overlap).
    init(vms: [(vm: String, host: String)], maxGlobal: Int = 3, maxPerHost: Int = 2, copyPauseMs: Int = 0) throws {
        self.vms = vms
        let d = dir.path
        dir.write(
            "config/backup_vm.d/backup_vm.conf",
            """
            HostServers="\(Set(vms.map(\.host)).sorted().joined(separator: " "))"
            BackupStorage=\(d)/storage
            SpoolDir=\(d)/spool
            MaxBackupThreads=\(maxGlobal)
            MaxBackupThreadsForHost=\(maxPerHost)
            SpoolRescanSeconds=3600
            SyslogSocket=\(d)/no-syslog

            """)
        dir.write("config/backup_vm.d/sheduler.conf", vms.map { "\($0.vm) * 3\n" }.joined())
        dir.write("config/vmsnapshot.d/default", "Mode=cold\nWorkPath=\(d)/work\n")
        dir.write("vms", vms.map { "\($0.vm) \($0.host)\n" }.joined())
        for (vm, _) in vms {
            dir.write("disks/\(vm).raw", String(repeating: "\(vm) disk content\n", count: 64))
            dir.write(
                "xml/\(vm).xml",
                ScriptedHypervisor.domainXML(
                    vm, [DomainDisk(target: "vda", kind: .file, format: .raw, source: "\(d)/disks/\(vm).raw")]))
        }
        for sub in ["work", "gates", "bin", "remote-bin"] {
            try FileManager.default.createDirectory(atPath: d + "/" + sub, withIntermediateDirectories: true)
        }
        try writeStubs(pauseMs: copyPauseMs)
        try spool.prepare()
    }

    private func writeStubs(pauseMs: Int) throws {
        let d = dir.path
        try SandboxHost.executable(
            d + "/bin/ssh",
            """
            #!/bin/bash
            # ssh -O exit (the end of a job's shared connection): there is no master to stop.
            for a in "$@"; do [ "$a" = -O ] && exit 0; done
            prev=; for a in "$@"; do [ "$prev" = -- ] && STANDIN_HOST=$a; prev=$a; done
            export STANDIN_HOST PATH='\(d)/remote-bin':"$PATH"
            cd '\(d)/work' || exit 255
            exec bash -c "${@: -1}"
            """)
        try SandboxHost.executable(
            d + "/remote-bin/virsh",
            """
            #!/bin/bash
            [ "$1" = -q ] && shift
            vm=${*: -1}; home=
            while read -r name host; do [ "$name" = "$vm" ] && home=$host; done < '\(d)/vms'
            if [ "$home" != "$STANDIN_HOST" ]; then echo "error: failed to get domain '$vm'" >&2; exit 1; fi
            case $1 in
              domstate) echo 'shut off' ;;
              dumpxml) cat '\(d)/xml/'"$vm.xml" ;;
            esac
            """)
        let pause = String(format: "%.3f", Double(pauseMs) / 1000)
        try SandboxHost.executable(
            d + "/remote-bin/dd",
            """
            #!/bin/bash
            for a in "$@"; do case $a in if=*) src=${a#if=} ;; esac; done
            vm=$(basename "$src" .raw)
            now() { echo "${EPOCHREALTIME//[!0-9]/}"; }
            echo "start $(now) ${BVM_TAG:-0} $vm $vm $STANDIN_HOST" >> '\(d)/events'
            gate='\(d)/gates/'"$vm"; if [ -p "$gate" ]; then cat "$gate" > /dev/null 2>&1; fi
            sleep \(pause)
            /bin/dd "$@"; rc=$?
            echo "end $(now) ${BVM_TAG:-0} $vm $vm $STANDIN_HOST" >> '\(d)/events'
            exit $rc
            """)
    }

    /// Starts `backup_vmd` on this fleet; `tag` names it in the events.
    func daemon(tag: Int, verbose: Bool = false) throws -> ChildProcess {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return try ChildProcess(
            Paths.binary("backup_vmd"),
            ["--config-dir", configDir, "--console"] + (verbose ? ["--verbose"] : []),
            environment: ["PATH": dir.path + "/bin:" + path, "BVM_TAG": "\(tag)"])
    }

    /// Makes the copy of `vm` wait until `release(vm)`.
    func hold(_ vm: String) { mkfifo(dir.path + "/gates/" + vm, 0o600) }

    /// Lets a held copy go on: a copy waiting at the gate reads EOF once a writer came and went; one
    /// that has not reached it yet finds no gate. Releasing twice is harmless.
    func release(_ vm: String) {
        let gate = dir.path + "/gates/" + vm
        let fd = open(gate, O_WRONLY | O_NONBLOCK | O_CLOEXEC)  // ENXIO: nobody waits there yet
        unlink(gate)
        if fd >= 0 { close(fd) }
    }

    var events: [WorkerEvent] { WorkerEvents.read(eventsPath) }

    /// Which folders of the spool hold each job name.
    func folders() -> [String: [JobState]] {
        var states: [String: [JobState]] = [:]
        for state in JobState.allCases {
            for name in spool.names(in: state) { states[name, default: []].append(state) }
        }
        return states
    }

    func record(_ name: String, in state: JobState) -> String {
        (try? String(contentsOfFile: state.directory(in: spool.layout) + "/" + name, encoding: .utf8)) ?? ""
    }

    /// Committed backups of `vm` (directories named by their ID).
    func backups(of vm: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: storage + "/" + vm)) ?? []).filter {
            !$0.hasPrefix(".")
        }
    }
}
