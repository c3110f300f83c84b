/// A file disk: written beside the file (`PATH.bvmrestore-ID`), renamed over it once every disk is
/// written; until the restore is through, the replaced file stays as a second link
/// (`PATH.bvmreplaced-ID`), so the swap can be undone.
struct FileRestore: DiskRestore {
    let host: RemoteHost
    let image: Manifest.StoredImage
    let path: String
    let id: String

    var target: String { image.target }
    var writesAside: Bool { true }
    private var temporary: String { BackupNames.restoringFile(path, id: id) }
    private var replaced: String { BackupNames.replacedFile(path, id: id) }
    private var quoted: (path: String, temporary: String, replaced: String) {
        (ShellQuote.quote(path), ShellQuote.quote(temporary), ShellQuote.quote(replaced))
    }

    func write(from stored: String, abort: AbortFlag?) throws {
        try ImageWriter(host: host).send(
            stored, image: image, script: ImageWriter.fileScript(image, to: path, temporary: temporary),
            what: "writing \(image.target) to \(temporary) (\(path) is untouched until it is complete)", abort: abort)
    }

    func swapIn() throws {
        let q = quoted
        try host.run(
            "if [ -e \(q.path) ] || [ -L \(q.path) ]; then ln -f \(q.path) \(q.replaced); fi; "
                + "mv -f \(q.temporary) \(q.path)",
            what: "renaming \(temporary) to \(path)")
    }

    func swapBack() throws {
        let q = quoted
        try host.run(
            "mv -f \(q.path) \(q.temporary); "
                + "if [ -e \(q.replaced) ] || [ -L \(q.replaced) ]; then mv -f \(q.replaced) \(q.path); fi",
            what: "putting \(path) back as it was")
    }

    func discard() throws { try host.run("rm -f \(quoted.temporary)", what: "removing \(temporary)") }

    func finish() -> String? {
        do {
            try host.run("rm -f \(quoted.replaced)", what: "removing \(replaced)")
            return nil
        } catch {
            return "the replaced file \(replaced) could not be removed (\(error)); remove it by hand"
        }
    }
}
