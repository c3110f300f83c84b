/// A local program could not be run or read: the machinery failed, not the program (whose exit status
/// the caller judges). ssh invoked through RemoteHost reports these as RemoteError.launch.
public enum ProcessError: Error, CustomStringConvertible, Sendable, Equatable {
    /// pipe(2) failed (descriptor limits).
    case pipe(reason: String)
    /// posix_spawn failed: the program is missing or not executable.
    case spawn(program: String, reason: String)
    /// The consumer of the program's output failed (a full disk on this server, say).
    case output(program: String, reason: String)
    /// The program was ended by its CommandLimits (timeout, no progress, abort); `stderr` is what it
    /// had said by then.
    case cut(program: String, CommandCut, stderr: String)

    public var description: String {
        switch self {
        case .pipe(let reason): return "cannot create a pipe: \(reason)"
        case .spawn(let program, let reason): return "cannot run \(program): \(reason)"
        case .output(let program, let reason): return "handling the output of \(program) failed: \(reason)"
        case .cut(let program, let cut, _): return "\(program) was ended: \(cut)"
        }
    }
}
