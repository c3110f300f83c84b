import Foundation
import Logging

/// The throw-away domain of one restore test on one hypervisor, and its directory: made, started,
/// watched, removed.
struct RestoreTestCopy {
    let host: RemoteHost
    let name: String
    let directory: String
    let log: Logger

    var console: String { directory + "/console.log" }

    /// Written into the copy's <metadata>: only a domain carrying it is ever stopped or undefined here.
    static let marker = "https://backup-vm.invalid/restore-test"

    /// The domain (stopped, undefined) and the directory, gone. A domain of that name without our
    /// marker is somebody's VM: it is refused, never touched.
    func remove() throws {
        let n = ShellQuote.quote(name)
        do {
            try removeScript(n)
        } catch RemoteError.command(_, _, 3, let stderr) where stderr.contains("is not a restore test's copy") {
            throw RestoreTestRefusal(description: RemoteError.trim(stderr))
        }
    }

    /// Fails closed: a libvirt that cannot be asked is not "no such domain", a definition that cannot
    /// be read is not somebody else's, and a copy that did not stop is neither undefined nor are its
    /// files removed under it (exit 4 names it; the next test, or recovery, tries again).
    private func removeScript(_ n: String) throws {
        try host.run(
            """
            \(Virsh.domstate(name)); if [ "$s" != '#absent' ]; then \
            x=$(virsh dumpxml \(n)) || { echo "cannot read the definition of \(name); left as it is" >&2; exit 4; }; \
            case "$x" in *\(Self.marker)*) ;; *) echo "a domain named \(name) exists and is not a restore test's copy: \
            not touched; rename it or test another way" >&2; exit 3 ;; esac; \
            if [ "$s" != 'shut off' ] && ! virsh destroy \(n) >/dev/null && \
            [ "$(virsh -q domstate \(n) 2>/dev/null)" != 'shut off' ]; then \
            echo "\(name) could not be stopped; it and its files are left as they are" >&2; exit 4; fi; \
            virsh undefine \(n) --nvram >/dev/null 2>&1 || virsh undefine \(n) >/dev/null; fi; \
            rm -rf \(ShellQuote.quote(directory))
            """, what: "removing the restore test's domain \(name) and \(directory)")
    }

    /// Makes the directory (qemu runs as its own user: the path to the disks must be searchable, not
    /// readable) and checks, in the same round trip, that the host has room for the copy:
    /// - its disks in the directory's file system (a qcow2 disk stored as raw content needs its raw
    ///   file and the qcow2 beside it), with 5% and 256 MiB to spare: a hypervisor whose running VMs
    ///   share that file system must never fill up because of a test;
    /// - its memory (RestoreTestNeeds): the copy starts on a host whose running VMs need theirs.
    /// - the files it reads (kernel, initrd, firmware): readable by every user of the host.
    func prepare(_ needs: RestoreTestNeeds) throws {
        let d = ShellQuote.quote(directory)
        let parent = (directory as NSString).deletingLastPathComponent
        let out = try host.run(
            "mkdir -p \(d) && chmod 711 \(d) && chmod a+x \(ShellQuote.quote(parent)) "
                + ShellQuote.quote((parent as NSString).deletingLastPathComponent) + "; "
                + needs.probe(directory: directory),
            what: "making \(directory), and the room, memory and files there")
        try needs.check(RestoreTestNeeds.HostRoom(parsing: out), host: host.name, directory: directory)
    }

    func removeReporting() {
        do { try remove() } catch {
            log.error("the restore test's copy could not be removed: \(error); remove \(name) and \(directory) by hand")
        }
    }

    /// Where a disk of the copy goes, in its own format.
    func file(for image: Manifest.StoredImage) -> (path: String, format: DomainDisk.Format) {
        let format: DomainDisk.Format = image.format == .qcow2 ? .qcow2 : .raw
        return (directory + "/\(image.target).\(format.rawValue)", format)
    }

    /// Makes the copy's XML (refusing one that cannot be made safe before anything is written),
    /// checks room, memory and the files it reads, writes the disks, defines and starts the copy,
    /// waits for its sign of life.
    func bootAndWatch(_ manifest: Manifest, backup: BackupRef, profile: SnapshotProfile, abort: AbortFlag) throws
        -> RestoreTestRecord
    {
        let files = Dictionary(manifest.disks.map { ($0.target, file(for: $0)) }, uniquingKeysWith: { a, _ in a })
        let xml = try DomainXML.forRestoreTest(
            manifest.domainXML, name: name, diskFiles: files, console: console, marker: Self.marker, backup: backup.id)
        try prepare(
            RestoreTestNeeds(
                disks: manifest.disks, memory: try DomainXML.memoryBytes(of: xml),
                inputs: try DomainXML.filesReadByCopy(xml)))
        for image in manifest.disks {
            if abort.isRaised { throw PipelineError.aborted }
            try ImageWriter(host: host).write(
                image, from: backup.path + "/" + image.file, to: file(for: image).path, id: backup.id, abort: abort)
        }
        try Virsh(host: host).define(xml: xml, what: "virsh define \(name)")
        try Virsh(host: host).start(name)
        let started = Date()
        log.info("restore test: \(name) started on \(host.name) from backup \(backup.id)")
        let waiter = RestoreTestWatch(
            host: host, name: name, console: console, ready: profile.restoreTestReady,
            agent: try DomainXML.hasAgentChannel(xml),
            runFor: profile.restoreTestSeconds)
        let outcome = try waiter.wait(timeout: TimeInterval(profile.restoreTestTimeout), since: started, abort: abort)
        var record = RestoreTestRecord(
            tested: Timestamps.iso(Date()), ok: false, host: host.name, name: name, bootSeconds: nil, signal: nil,
            problem: nil)
        switch outcome {
        case .alive(let signal, let seconds):
            record.ok = true
            record.signal = signal
            record.bootSeconds = seconds
        case .failed(let problem):
            record.problem = problem
        }
        return record
    }
}

/// Watching a started copy for its sign of life, one ssh round trip a second.
struct RestoreTestWatch {
    let host: RemoteHost
    let name: String
    let console: String
    let ready: String?
    let agent: Bool
    let runFor: Int

    enum Outcome: Equatable {
        case alive(signal: String, seconds: Double)
        case failed(String)
    }

    var probe: String {
        let n = ShellQuote.quote(name)
        var s = "echo \"state $(virsh domstate \(n) 2>/dev/null | head -n 1)\""
        if let ready {
            s +=
                "; grep -Eq -- \(ShellQuote.quote(ready)) \(ShellQuote.quote(console)) 2>/dev/null && echo ready console"
        }
        if agent {
            s +=
                "; virsh qemu-agent-command \(n) '{\"execute\":\"guest-ping\"}' --timeout 2 >/dev/null 2>&1 && echo ready agent"
        }
        return s + "; true"
    }

    func wait(timeout: TimeInterval, since started: Date, abort: AbortFlag) throws -> Outcome {
        let deadline = started.addingTimeInterval(timeout)
        while true {
            if abort.isRaised { throw PipelineError.aborted }
            let out = try host.run(probe, what: "watching \(name)")
            let seconds = Date().timeIntervalSince(started)
            let lines = out.split(separator: "\n").map(String.init)
            if let line = lines.first(where: { $0.hasPrefix("ready ") }) {
                return .alive(signal: String(line.dropFirst("ready ".count)), seconds: seconds)
            }
            let state = lines.first { $0.hasPrefix("state ") }.map { String($0.dropFirst("state ".count)) } ?? ""
            if state != "running" {
                return .failed("the copy is \(state.isEmpty ? "gone" : state) after \(Int(seconds)) s\(tail())")
            }
            if ready == nil && !agent && seconds >= Double(runFor) {
                return .alive(signal: "running", seconds: seconds)
            }
            if Date() >= deadline {
                let what =
                    ready.map { "no console line matched RestoreTestReady '\($0)'" } ?? "the agent did not answer"
                return .failed("\(what) within \(Int(timeout)) s\(tail())")
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }

    /// The console's last lines, for the reason: at most 5 lines of 200 bytes cross the wire (a guest
    /// that wrote a line of gigabytes must not fill this server's memory), and the guest's text becomes
    /// one line without control characters (no escape sequence of its reaches a terminal or the log).
    func tail() -> String {
        let command = "tail -c 65536 \(ShellQuote.quote(console)) 2>/dev/null | tail -n 5 | cut -b 1-200; true"
        guard let text = try? host.run(command, what: "console"), !text.isEmpty else { return "" }
        let lines = text.split(whereSeparator: \.isNewline).map { ReasonText.oneLine(String($0), limit: 200) }
        return "; its console ended: " + lines.joined(separator: " | ")
    }
}
