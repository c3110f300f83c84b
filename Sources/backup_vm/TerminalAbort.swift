import BackupVMCore
import Foundation

/// Ctrl-C, SIGTERM, or the terminal going away (SIGHUP: a dropped ssh session) raise `flag`: the
/// manual run, restore or restore test then rolls back what it did instead of dying midway.
final class TerminalAbort {
    let flag = AbortFlag()
    private var sources: [DispatchSourceSignal] = []

    init() {
        let flag = self.flag
        sources = [SIGINT, SIGTERM, SIGHUP].map { sig in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { flag.raise() }
            s.resume()
            return s
        }
    }

    func cancel() { for s in sources { s.cancel() } }
}
