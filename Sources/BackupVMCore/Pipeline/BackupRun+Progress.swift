import Foundation

/// What `backup_vm status` shows of this run: its phase, and during the copy the bytes received so
/// far, heading to the previous backup's figure. Counting reads the partial directory's file sizes
/// (Store=files) or the chunk receivers' counter (Store=chunks) from the reporter's own thread.
extension BackupRun {
    func enter(_ phase: JobProgress.Phase) { progress?.phase(phase) }

    /// The copy phase begins (or resumes after the thaw); the count is over the whole backup.
    func countCopy() {
        guard let progress else { return }
        let partial = self.partial
        let chunkProgress = chunkSession?.staging.progress
        progress.phase(.copy)
        progress.counting(total: previousFigure()) {
            chunkProgress?.value ?? Self.sizeOfFiles(in: partial)
        }
    }

    /// The disk (or RAM state) being copied now.
    func working(on target: String) { progress?.note(target) }

    /// What the newest earlier backup of this VM in the same format counted: stored bytes for files,
    /// disk content for chunks (nil: none, so no estimate and no ETA).
    func previousFigure() -> Int64? {
        for ref in store.catalog.backups(of: plan.vm).reversed() {
            guard let m = try? Manifest.read(backupDirectory: ref.path) else { continue }
            guard (m.store ?? .files) == storeFormat else { return nil }
            switch storeFormat {
            case .files: return m.disks.reduce(0) { $0 + $1.storedBytes } + (m.ramState?.storedBytes ?? 0)
            case .chunks: return m.disks.reduce(0) { $0 + $1.rawBytes }
            }
        }
        return nil
    }

    /// The image files directly in `directory` (not the breadcrumb, the domain XML or a temporary
    /// file), summed (lstat: nothing is followed).
    static func sizeOfFiles(in directory: String) -> Int64 {
        guard let names = try? Files.visibleEntries(directory) else { return 0 }
        let metadata: Set = [
            BackupNames.breadcrumb, BackupNames.domainXML, BackupNames.manifest, BackupNames.verifyRecord,
        ]
        var total: Int64 = 0
        for name in names where !metadata.contains(name) && !name.contains(".tmp") {
            var st = stat()
            if lstat(directory + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { total += Int64(st.st_size) }
        }
        return total
    }
}
