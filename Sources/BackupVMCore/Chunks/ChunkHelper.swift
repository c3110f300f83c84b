import ChunkWire
import Foundation

/// The chunk store's hypervisor helper as this server has it: the file copied to each hypervisor and
/// its SHA-256. On the hypervisor it lives in WorkPath under a name carrying its digest
/// (`.bvm-chunk-helper-<16 hex>`), is checked against the full digest before every use, and is
/// copied again when it is missing or differs: nothing to install by hand, and a changed or damaged
/// file there is never run.
public struct ChunkHelper: Sendable, Equatable {
    public let localPath: String
    public let sha256: String

    public static let fileName = "bvm-chunk-helper"

    /// The helper at `path`, or beside the running executable (an installed link is followed: this
    /// server's own file, named by its administrator).
    public static func load(path: String?) throws -> ChunkHelper {
        let named = path ?? Self.besideExecutable()
        let local = URL(fileURLWithPath: named).resolvingSymlinksInPath().path
        var st = stat()
        guard stat(local, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG,
            FileManager.default.isExecutableFile(atPath: local),
            let digest = try? FileDigest.sha256(ofFile: local).digest
        else {
            throw ChunkHelperError.missing(path: named)
        }
        return ChunkHelper(localPath: local, sha256: digest)
    }

    static func besideExecutable() -> String {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent + "/" + fileName
    }

    /// Where it is kept on a hypervisor.
    public func remotePath(workPath: String) -> String { workPath + "/.\(Self.fileName)-" + sha256.prefix(16) }

    /// Exit status of a script that found the helper missing or different.
    static let missingStatus: Int32 = 97
    static let missingMarker = "BACKUP_VM_HELPER_MISSING"

    /// Sets `$h` and exits 97 unless the file there has our digest.
    func checkCommand(remote: String) -> String {
        let q = ShellQuote.quote(remote)
        return "h=\(q); printf '%s  %s\\n' \(sha256) \"$h\" | sha256sum -c --status 2>/dev/null "
            + "|| { echo \(Self.missingMarker) >&2; exit \(Self.missingStatus); }"
    }

    /// Receives the helper on stdin into a temporary file beside `remote`, checks it, renames it.
    func uploadScript(remote: String) -> String {
        let q = ShellQuote.quote(remote)
        let dir = ShellQuote.quote((remote as NSString).deletingLastPathComponent)
        return """
            mkdir -p \(dir); t=$(mktemp \(q).XXXXXX); trap 'rm -f "$t"' EXIT; cat > "$t"; chmod 0700 "$t"; \
            printf '%s  %s\\n' \(sha256) "$t" | sha256sum -c --status \
            || { echo "the chunk helper arrived damaged" >&2; exit 3; }; mv -f "$t" \(q); trap - EXIT
            """
    }
}

public enum ChunkHelperError: Error, CustomStringConvertible, Equatable {
    case missing(path: String)

    public var description: String {
        switch self {
        case .missing(let path):
            return "Store=chunks needs the hypervisor helper \(path), which is missing or not an executable file:"
                + " install bvm-chunk-helper beside backup_vm (scripts/build-helper) or set ChunkHelper= in backup_vm.conf"
        }
    }
}
