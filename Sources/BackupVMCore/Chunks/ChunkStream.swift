import ChunkWire
import Foundation

/// One disk through the chunk store's helper on a hypervisor: the helper (copied there on first use)
/// reads the disk, and only the chunks this server lacks cross the wire (ChunkChannel, ChunkReceiver).
/// The source's size, asked on the hypervisor beside the read, must equal what the helper read: a
/// read that ended early is never stored as the whole disk.
struct ChunkStream {
    let host: RemoteHost
    let helper: ChunkHelper
    let workPath: String

    func send(_ image: ImageSource, scratch: String, into staging: ChunkStaging, abort: AbortFlag) throws
        -> ChunkReceipt
    {
        do {
            return try attempt(image, scratch: scratch, staging: staging, abort: abort)
        } catch let e as ChunkChannelError
            where e.status == ChunkHelper.missingStatus && e.stderr.contains(ChunkHelper.missingMarker)
        {
            try upload()
            return try attempt(image, scratch: scratch, staging: staging, abort: abort)
        }
    }

    var remote: String { helper.remotePath(workPath: workPath) }

    /// The remote script: check the helper, then read the image into it; the trailer line on stderr
    /// carries the source's size.
    func script(_ image: ImageSource, scratch: String) -> String {
        let read: String
        switch image {
        case .path(let path): read = "\"$h\" send --source \(ShellQuote.quote(path))"
        // The export arrives on a pipe as fd 3; our answers stay on stdin. pipefail fails the script
        // when nbdcopy fails, even after the helper has seen a clean end of its input.
        case .export(let uri):
            read =
                "exec 4<&0; nbdcopy --no-extents \(ShellQuote.quote(uri)) - </dev/null | \"$h\" send --source-fd 3 3<&0 0<&4"
        }
        let work = ShellQuote.quote(scratch)
        return """
            \(WorkPathGuard.require(workPath)); \(helper.checkCommand(remote: remote)); \
            mkdir -p \(work); t=$(mktemp -d \(work)/.bvm-chunk.XXXXXX); trap 'rm -rf "$t"' EXIT; \
            \(image.sizeCommand); \(read); \(image.sizeFinish)echo "BACKUP_VM_CHUNK_TRAILER $size" >&2
            """
    }

    /// The source's size, asked before the stream starts: every structure the receiver keeps is bounded
    /// by it, and a stream that goes past it is refused at once (a hostile or broken helper cannot make
    /// this server's memory grow with what it sends). The trailer's size, read beside the stream, must
    /// equal it too.
    func declaredSize(_ image: ImageSource) throws -> Int64 {
        let what = "asking the size of \(image)"
        let script: String
        switch image {
        case .path: script = image.sizeCommand + "; echo \"$size\""
        case .export(let uri): script = "nbdinfo --size \(ShellQuote.quote(uri))"
        }
        let out = try host.run(script, what: what).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let size = Int64(out), size >= 0 else {
            throw RemoteError.protocolViolation(
                host: host.name, what: what, detail: "expected a number of bytes, got '\(RemoteError.trim(out))'")
        }
        return size
    }

    private func attempt(_ image: ImageSource, scratch: String, staging: ChunkStaging, abort: AbortFlag) throws
        -> ChunkReceipt
    {
        let what = "reading \(image) into the chunk store"
        let declared = try declaredSize(image)
        let result: (receipt: ChunkReceipt, stderr: String)
        do {
            result = try ChunkChannel.receive(
                host.argv(script(image, scratch: scratch)), staging: staging, expectedSize: declared,
                limits: CommandLimits(stall: host.timeouts.stall, abort: abort))
        } catch ProcessError.cut(_, .aborted, _) {
            throw PipelineError.aborted
        } catch ProcessError.cut(_, let cut, _) {
            throw RemoteError.timedOut(host: host.name, what: what, cut: cut)
        } catch let e as ChunkChannelError {
            guard let status = e.status, status != 0 else { throw e }
            if status == ChunkHelper.missingStatus, e.stderr.contains(ChunkHelper.missingMarker) { throw e }
            // The helper's own failures are best told by its failure frame; ssh's and the script's
            // (a missing disk, nbdcopy) by the exit status and stderr.
            if case ChunkTransferError.helper? = e.transfer { throw e }
            try host.check(status, stderr: e.stderr, what: what)
            throw e
        }
        guard let line = result.stderr.split(separator: "\n").last(where: { $0.hasPrefix("BACKUP_VM_CHUNK_TRAILER ") }),
            let size = Int64(line.split(separator: " ").last ?? "")
        else {
            throw RemoteError.protocolViolation(
                host: host.name, what: what, detail: "no size trailer; stderr: \(RemoteError.trim(result.stderr))")
        }
        guard size == result.receipt.index.size else {
            throw TransferError.shortRead(source: image.description, size: size, read: result.receipt.index.size)
        }
        return result.receipt
    }

    private func upload() throws {
        let fd = open(helper.localPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: helper.localPath) }
        defer { close(fd) }
        _ = try host.stream(
            helper.uploadScript(remote: remote), what: "copying the chunk helper to \(remote)", stdin: fd
        ) { _ in true }
    }
}
