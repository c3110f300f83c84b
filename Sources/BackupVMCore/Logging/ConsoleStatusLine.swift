import Foundation

/// The one line at the bottom of a terminal that a manual run keeps rewriting (its progress), and
/// the log lines written above it. Only on a terminal: when stderr is a file or a pipe, log lines
/// are written as they are and the status line is never shown (no carriage returns in logs).
public final class ConsoleStatusLine: @unchecked Sendable {
    public static let shared = ConsoleStatusLine(fd: 2)

    public let isTerminal: Bool
    private let fd: Int32
    private let lock = NSLock()
    private var shown: String?

    init(fd: Int32) {
        self.fd = fd
        isTerminal = isatty(fd) == 1
    }

    /// Shows `text` as the status line (cut to the terminal's width); nothing when not a terminal.
    public func show(_ text: String) {
        guard isTerminal else { return }
        lock.withLock {
            let line = String(text.prefix(max(width() - 1, 20)))
            write("\r\u{1B}[K" + line)
            shown = line
        }
    }

    /// Removes the status line.
    public func clear() {
        guard isTerminal else { return }
        lock.withLock {
            if shown != nil { write("\r\u{1B}[K") }
            shown = nil
        }
    }

    /// A log line, above the status line (which is drawn again below it).
    public func printLine(_ line: String) {
        lock.withLock {
            if shown != nil { write("\r\u{1B}[K") }
            write(line + "\n")
            if let shown { write(shown) }
        }
    }

    private func width() -> Int {
        var size = winsize()
        return ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
    }

    /// write(2), retried on EINTR; a failed write (EPIPE) is dropped, never fatal.
    private func write(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
