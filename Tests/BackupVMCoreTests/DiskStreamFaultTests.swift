import Foundation
import Testing

@testable import BackupVMCore

/// Issue #9's fault suite, the stream's own faults: the real streaming script (bash, dd, lzop, tee,
/// cksum) run through a stand-in ssh, with one stage replaced by a stub that misbehaves. Each must
/// fail the copy with a reason an operator understands, never yield an image that looks complete.
@Suite("disk stream faults", .tags(.spool))
struct DiskStreamFaultTests {
    let dir = TempDir("streamfault")

    /// A 4 MiB incompressible disk in the sandbox.
    func disk(_ sandbox: SandboxHost) throws -> String {
        let source = sandbox.sandbox + "/disk.raw"
        let r = try runTool("/bin/dd", ["if=/dev/urandom", "of=\(source)", "bs=1M", "count=4", "status=none"])
        try #require(r.status == 0)
        return source
    }

    func copy(_ sandbox: SandboxHost, _ source: String, stage: String? = nil) throws -> TransferredImage {
        try DiskStream(host: sandbox.host, compression: .lzop, level: 1).copy(
            source: source, workDir: sandbox.sandbox + "/work", stageFile: stage, to: dir.path + "/stored.lzo",
            abort: AbortFlag())
    }

    @Test("the stream is shorter than the disk (dd stops early and exits 0): refused as a short read")
    func shortStream() throws {
        let sandbox = try SandboxHost(dir, stubs: ["dd": "exec /bin/dd \"$@\" count=1"])
        let source = try disk(sandbox)
        #expect(throws: TransferError.shortRead(source: source, size: 4 << 20, read: 1 << 20)) {
            _ = try copy(sandbox, source)
        }
    }

    /// pipefail: a stage that fails fails the script although the last stage (tee) exits 0. The
    /// stage's own message reaches the reason.
    @Test(
        "a remote pipeline stage fails while the last stage exits 0",
        arguments: [
            ("dd", "/bin/dd \"$@\" count=1; echo \"dd: error reading '/dev/vg/x': Input/output error\" >&2; exit 1"),
            ("lzop", "head -c 1000; echo 'lzop: write error' >&2; exit 2"),
        ])
    func stageFails(_ stage: String, _ action: String) throws {
        let sandbox = try SandboxHost(dir, stubs: [stage: action])
        let source = try disk(sandbox)
        #expect {
            _ = try copy(sandbox, source)
        } throws: { error in
            guard case RemoteError.command(_, _, let status, let stderr) = error else { return false }
            return status != 0 && (stderr.contains("Input/output error") || stderr.contains("lzop: write error"))
        }
    }

    @Test("the hypervisor's working path fills up (staged copy for keep-on-host): 'no space left in the working path'")
    func workPathFull() throws {
        let sandbox = try SandboxHost(dir)
        let source = try disk(sandbox)
        let work = sandbox.sandbox + "/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let mount = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", work])
        try #require(mount.status == 0, "mount: \(mount.err)")
        defer { _ = try? runTool("/bin/umount", [work]) }
        #expect {
            _ = try copy(sandbox, source, stage: work + "/vda.raw.lzo")
        } throws: { "\($0)".hasPrefix("no space left in the working path \(work) on kvm1") }
    }

    @Test("an intact stream still passes every check (the trailer carries what dd read)")
    func intact() throws {
        let sandbox = try SandboxHost(dir)
        let source = try disk(sandbox)
        let image = try copy(sandbox, source)
        #expect(image.rawBytes == 4 << 20)
        let back = try runTool("/bin/sh", ["-c", "lzop -dc '\(dir.path)/stored.lzo' | cmp - '\(source)'"])
        #expect(back.status == 0, "\(back.out) \(back.err)")
    }
}
