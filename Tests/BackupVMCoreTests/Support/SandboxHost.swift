import Foundation

@testable import BackupVMCore

/// A "hypervisor" that is this machine: a RemoteHost whose ssh is a stand-in that runs the remote
/// script here with bash, in `sandbox/`, with stubs first on PATH. Each stub logs its name and every
/// argument on its own line to `calls.log` and then runs its action (shell text). Real tools (dd,
/// lzop, tee, cksum, mkfifo) stay real.
struct SandboxHost {
    let dir: TempDir
    var sandbox: String { dir.path + "/sandbox" }
    var log: String { dir.path + "/calls.log" }
    /// One line per ssh invocation: its arguments without the remote script.
    var sshLog: String { dir.path + "/ssh.log" }
    let host: RemoteHost

    static let defaultStubs: [String: String] = [
        "virsh": "exit 0", "lvcreate": "exit 0", "lvremove": "exit 0",
        "lvs": "echo '  swi-a-s--- 3.00'", "blockdev": "echo 1048576",
    ]

    init(_ dir: TempDir, stubs: [String: String] = [:], timeouts: RemoteTimeouts = .defaults) throws {
        self.dir = dir
        let stubDir = dir.path + "/stubs"
        let fm = FileManager.default
        try fm.createDirectory(atPath: stubDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir.path + "/sandbox", withIntermediateDirectories: true)
        for (name, action) in SandboxHost.defaultStubs.merging(stubs, uniquingKeysWith: { $1 }) {
            try SandboxHost.executable(
                stubDir + "/" + name,
                "#!/bin/bash\n{ echo \"== $(basename \"$0\")\"; printf '%s\\n' \"$@\"; } >> '\(dir.path)/calls.log'\n"
                    + action + "\n")
        }
        try SandboxHost.executable(
            dir.path + "/ssh",
            "#!/bin/bash\nprintf '%s\\n' \"${*:1:$#-1}\" >> '\(dir.path)/ssh.log'\n"
                + "cd '\(dir.path)/sandbox' || exit 255\nexport PATH='\(stubDir)':\"$PATH\"\n"
                // ssh -O exit (the end of a shared connection): there is no master to stop.
                + "for a in \"$@\"; do [ \"$a\" = -O ] && exit 0; done\n"
                + "exec bash -c \"${@: -1}\"\n")
        host = RemoteHost(
            name: "kvm1", sshConfig: nil, connectTimeout: 5, sshProgram: dir.path + "/ssh", timeouts: timeouts)
    }

    static func executable(_ path: String, _ text: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    /// Files the sandbox has that start with `pwned`: commands that a hostile value ran.
    var pwned: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: sandbox)) ?? []).filter { $0.hasPrefix("pwned") }
    }

    var loggedArguments: [String] {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "\n")
    }
}
