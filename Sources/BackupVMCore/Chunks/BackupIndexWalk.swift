import ChunkWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Every chunk index of every backup directory in the storage folder (committed `VM/ID/`, and partial
/// `VM/.ID.partial/` of running jobs; not `.ID.deleting/`, which rotation is removing): what the
/// garbage collector must keep and what a quarantined chunk makes bad.
///
/// Fail closed: a directory that cannot be listed, an index that cannot be opened or read (EIO,
/// ESTALE, a link, over the size limit) or parsed is an error, never "no references". The one thing
/// that is not an error is an entry that is gone when it is read, if a fresh listing of its directory
/// no longer has it: a backup renamed by its commit or its rotation meanwhile (the collector reads the
/// backups that appeared since again before it removes anything).
struct BackupIndexWalk {
    let storage: String

    /// The largest index read (a 4 MiB chunk per 65 bytes: 1 GiB of index is a 64 PiB disk).
    var indexLimit = 1 << 30
    /// How a directory is listed and a file read (the tests put failing ones here: EIO, ESTALE).
    var list: (String) throws -> [String] = Files.entries
    var read: (String, Int) throws -> [UInt8] = Files.readRegularFileOrThrow

    init(storage: String) { self.storage = storage }

    /// Backup directories (paths) and, for each, the digests its indexes name, for every backup
    /// directory not in `skipping`.
    func indexes(skipping: Set<String> = []) throws -> [(directory: String, digests: Set<ChunkDigest>)] {
        var found: [(directory: String, digests: Set<ChunkDigest>)] = []
        let vms: [String]
        do { vms = try list(storage).filter { !$0.hasPrefix(".") } } catch {
            throw BackupIndexWalkError.unreadable(path: storage, why: "\(error)")
        }
        for vm in vms {
            let vmDir = storage + "/" + vm
            guard try isDirectory(vmDir, in: storage) else { continue }
            guard let names = try listing(vmDir, in: storage) else { continue }
            for name in names where !name.hasSuffix(".deleting") {
                let dir = vmDir + "/" + name
                guard !skipping.contains(dir), try isDirectory(dir, in: vmDir) else { continue }
                guard let digests = try digests(in: dir, parent: vmDir) else { continue }
                found.append((dir, digests))
            }
        }
        return found
    }

    /// The digests named by the indexes in one backup directory; nil when it is gone meanwhile.
    private func digests(in dir: String, parent: String) throws -> Set<ChunkDigest>? {
        guard let files = try listing(dir, in: parent) else { return nil }
        var digests = Set<ChunkDigest>()
        for file in files where file.hasSuffix(".index") {
            let path = dir + "/" + file
            let bytes: [UInt8]
            do {
                bytes = try read(path, indexLimit)
            } catch let e as SystemError where e.errno == ENOENT && !Files.exists(dir) {
                return nil  // the whole backup directory was renamed meanwhile
            } catch {
                throw BackupIndexWalkError.unreadable(path: path, why: "\(error)")
            }
            do {
                digests.formUnion(try ChunkIndex.parse(bytes, file: path).digests)
            } catch {
                throw BackupIndexWalkError.unreadable(path: path, why: "\(error)")
            }
        }
        return digests
    }

    /// A directory's names; nil when it vanished and a fresh listing of its parent agrees.
    private func listing(_ dir: String, in parent: String) throws -> [String]? {
        do {
            return try list(dir)
        } catch let e as SystemError where e.errno == ENOENT {
            let name = (dir as NSString).lastPathComponent
            if try !list(parent).contains(name) { return nil }
            throw BackupIndexWalkError.unreadable(path: dir, why: "\(e)")
        } catch {
            throw BackupIndexWalkError.unreadable(path: dir, why: "\(error)")
        }
    }

    /// A real directory (false for files; a link is an error: the catalog would follow it, this walk
    /// does not, so a backup behind it would look unreferenced).
    private func isDirectory(_ path: String, in parent: String) throws -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return false }
            throw BackupIndexWalkError.unreadable(path: path, why: String(cString: strerror(errno)))
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return true
        case S_IFLNK:
            throw BackupIndexWalkError.unreadable(
                path: path, why: "a symbolic link (backups behind links are not followed; move the directory here)")
        default: return false
        }
    }
}

public enum BackupIndexWalkError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, why: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let why): return "\(path) cannot be read: \(why)"
        }
    }
}
