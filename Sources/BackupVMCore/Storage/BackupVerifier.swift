import Foundation

/// Checks stored backups against their manifests: every image's stored bytes and SHA-256, then (a chunk
/// image) that every chunk it names is there and hashes to its name, or (a file) that it decompresses (which checks the format's own content checksums) to the recorded size (by running `lzop -dc`/`zstd -dc`, the same tools an operator would
/// use by hand). The outcome is recorded as `verify.json` in the backup directory, which `list` shows.
public struct BackupVerifier: Sendable {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var detail: String
        public var description: String { "\(file): \(detail)" }
    }

    public struct Report: Sendable {
        public var backup: BackupRef
        public var problems: [Problem]
        public var ok: Bool { problems.isEmpty }
    }

    public struct Record: Codable, Sendable {
        public var verified: String
        public var ok: Bool
        public var problems: [String]
        /// The last restore test (kept when verify rewrites the record).
        public var restoreTest: RestoreTestRecord? = nil
    }

    /// Chunks checked in this verifier's run, shared by the backups it verifies: each chunk is read
    /// once, and a damaged one is named for every backup that uses it.
    private let chunkChecks = ChunkChecks()

    public init() {}

    public func verify(_ backup: BackupRef) -> Report {
        let manifest: Manifest
        do { manifest = try Manifest.read(backupDirectory: backup.path) } catch {
            return record(
                Report(
                    backup: backup,
                    problems: [Problem(file: backup.path + "/" + BackupNames.manifest, detail: "unreadable: \(error)")]
                ))
        }
        var problems: [Problem] = []
        for image in manifest.disks + (manifest.ramState.map { [$0] } ?? []) {
            let path = backup.path + "/" + image.file
            guard Files.exists(path) else {
                problems.append(Problem(file: path, detail: "missing"))
                continue
            }
            do {
                let stored = try sha256(ofFile: path)
                if stored.bytes != image.storedBytes || stored.digest != image.storedSHA256 {
                    problems.append(
                        Problem(
                            file: path,
                            detail:
                                "stored file differs from the manifest (\(stored.bytes) bytes, sha256 \(stored.digest); expected \(image.storedBytes) bytes, sha256 \(image.storedSHA256))"
                        ))
                    continue
                }
                if image.chunks != nil {
                    let check = chunkChecks.check(for: ChunkStore.of(backupFile: path))
                    problems += check.problems(indexFile: path, image: image).map { Problem(file: path, detail: $0) }
                    continue
                }
                let tool = Compression(storedFileName: image.file).tool
                // Decompressing checks the format's own checksums of the content; count what comes out.
                var count: Int64 = 0
                let (status, stderr) = try ProcessRunner.stream([tool, "-dc", "--", path], stdin: nil) { chunk in
                    count += Int64(chunk.count)
                    return true
                }
                if status != 0 {
                    problems.append(Problem(file: path, detail: "\(tool) -d failed: \(RemoteError.trim(stderr))"))
                } else if count != image.rawBytes {
                    problems.append(
                        Problem(
                            file: path, detail: "decompresses to \(count) bytes; the manifest says \(image.rawBytes)"))
                }
            } catch {
                problems.append(Problem(file: path, detail: "\(error)"))
            }
        }
        return record(Report(backup: backup, problems: problems))
    }

    func record(_ report: Report) -> Report {
        var rec = Record(verified: Timestamps.iso(Date()), ok: report.ok, problems: report.problems.map(\.description))
        rec.restoreTest = Self.lastRecord(report.backup)?.restoreTest
        if let data = try? JSONEncoder().encode(rec) {
            _ = FileManager.default.createFile(
                atPath: report.backup.path + "/" + BackupNames.verifyRecord, contents: data,
                attributes: [.posixPermissions: 0o600])
        }
        return report
    }

    /// Records a restore test: into the existing record, or a new one saying whether the stored
    /// images checked out (the test checks them before it writes anything; `damaged`: what did not).
    public static func record(_ test: RestoreTestRecord, for backup: BackupRef, damaged: String? = nil) {
        var rec = lastRecord(backup) ?? Record(verified: test.tested, ok: true, problems: [])
        if let damaged {
            rec.verified = test.tested
            rec.ok = false
            rec.problems = [damaged]
        }
        rec.restoreTest = test
        if let data = try? JSONEncoder().encode(rec) {
            try? Files.replaceFile(backup.path + "/" + BackupNames.verifyRecord, contents: Array(data))
        }
    }

    public static func lastRecord(_ backup: BackupRef) -> Record? {
        guard let data = FileManager.default.contents(atPath: backup.path + "/" + BackupNames.verifyRecord) else {
            return nil
        }
        return try? JSONDecoder().decode(Record.self, from: data)
    }

    func sha256(ofFile path: String) throws -> (bytes: Int64, digest: String) { try FileDigest.sha256(ofFile: path) }
}

/// One ChunkImageCheck per chunk store, for the length of a verifier's run.
final class ChunkChecks: @unchecked Sendable {
    private let lock = NSLock()
    private var checks: [String: ChunkImageCheck] = [:]

    func check(for store: ChunkStore) -> ChunkImageCheck {
        lock.withLock {
            if let c = checks[store.root] { return c }
            let c = ChunkImageCheck(store: store)
            checks[store.root] = c
            return c
        }
    }
}
