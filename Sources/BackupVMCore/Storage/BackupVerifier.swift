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

    /// `verify.json`. `verified` and `ok` are absent until a check of the stored images ran: a restore
    /// test that failed before it checked anything records only its own result, never "ok".
    public struct Record: Codable, Sendable {
        public var verified: String?
        public var ok: Bool?
        public var problems: [String]
        /// The last restore test (kept when verify rewrites the record).
        public var restoreTest: RestoreTestRecord? = nil

        /// A check ran and found the backup damaged.
        public var isBad: Bool { ok == false }
    }

    /// Chunks checked in this verifier's run, shared by the backups it verifies: each chunk is read
    /// once, and a damaged one is named for every backup that uses it.
    private let chunkChecks: ChunkChecks

    /// `trustChunksVerifiedWithin`: a chunk read and found good within that many days (by any verify,
    /// ChunkVerifiedLog) is not read again (a scheduled verification; 0: every chunk is read).
    public init(trustChunksVerifiedWithin days: Int = 0, now: Date = Date()) {
        chunkChecks = ChunkChecks(trustDays: days, now: now)
    }

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
                    let store = ChunkStore.of(backupFile: path)
                    let check = chunkChecks.check(for: store)
                    problems += check.problems(indexFile: path, image: image).map { Problem(file: path, detail: $0) }
                    ChunkVerifiedLog(store: store).record(check.takeReadGood())
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
        var rec = Record(
            verified: Timestamps.iso(Date()), ok: report.ok,
            problems: report.problems.map { ReasonText.oneLine("\($0)") })
        rec.restoreTest = Self.lastRecord(report.backup)?.restoreTest
        var report = report
        if let failure = Self.write(rec, for: report.backup) {
            report.problems.append(Problem(file: report.backup.path + "/" + BackupNames.verifyRecord, detail: failure))
        }
        return report
    }

    /// Records a restore test's result. Its verify fields change only when the test's own check of the
    /// stored images found damage (`damaged`): a test that failed before it checked anything, or that
    /// checked less than verify does, never records the backup as verified.
    public static func record(_ test: RestoreTestRecord, for backup: BackupRef, damaged: String? = nil) {
        var rec = lastRecord(backup) ?? Record(verified: nil, ok: nil, problems: [])
        if let damaged {
            rec.verified = test.tested
            rec.ok = false
            rec.problems = [ReasonText.oneLine(damaged)]
        }
        var test = test
        test.problem = test.problem.map { ReasonText.oneLine($0) }
        rec.restoreTest = test
        _ = write(rec, for: backup)
    }

    /// Records damage found outside a verify run (a chunk that a restore, an export or another
    /// backup's verify found damaged and quarantined): the backup is bad until verified again.
    public static func recordDamage(_ problem: String, for backup: BackupRef, now: Date = Date()) {
        var rec = lastRecord(backup) ?? Record(verified: nil, ok: nil, problems: [])
        rec.verified = Timestamps.iso(now)
        rec.ok = false
        let problem = ReasonText.oneLine(problem)
        if !rec.problems.contains(problem) { rec.problems.append(problem) }
        _ = write(rec, for: backup)
    }

    /// Writes the record atomically; the failure's text, if any (the caller reports it).
    private static func write(_ rec: Record, for backup: BackupRef) -> String? {
        let path = backup.path + "/" + BackupNames.verifyRecord
        do {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            try Files.replaceFile(path, contents: Array(try e.encode(rec)))
            return nil
        } catch {
            return "the verify record could not be written: \(error)"
        }
    }

    /// The backup's verify record; nil when there is none. One that exists but cannot be read or
    /// parsed counts as bad (with that as its problem): what cannot be read is never taken as good.
    public static func lastRecord(_ backup: BackupRef) -> Record? {
        let path = backup.path + "/" + BackupNames.verifyRecord
        let bytes: [UInt8]
        do { bytes = try Files.readRegularFileOrThrow(path, limit: 1 << 20) } catch let e as SystemError
            where e.errno == ENOENT
        {
            return nil
        } catch {
            return Record(verified: nil, ok: false, problems: ["\(path): \(error)"])
        }
        do { return try JSONDecoder().decode(Record.self, from: Data(bytes)) } catch {
            return Record(verified: nil, ok: false, problems: ["\(path): unreadable verify record (\(error))"])
        }
    }

    func sha256(ofFile path: String) throws -> (bytes: Int64, digest: String) { try FileDigest.sha256(ofFile: path) }
}

/// One ChunkImageCheck per chunk store, for the length of a verifier's run.
final class ChunkChecks: @unchecked Sendable {
    private let lock = NSLock()
    private var checks: [String: ChunkImageCheck] = [:]
    let trustDays: Int
    let now: Date

    init(trustDays: Int = 0, now: Date = Date()) {
        self.trustDays = trustDays
        self.now = now
    }

    func check(for store: ChunkStore) -> ChunkImageCheck {
        lock.withLock {
            if let c = checks[store.root] { return c }
            let c = ChunkImageCheck(
                store: store, trusted: ChunkVerifiedLog(store: store).verified(within: trustDays, now: now))
            checks[store.root] = c
            return c
        }
    }
}
