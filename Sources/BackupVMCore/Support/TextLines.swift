/// The lines of a text file as an operator's editor, `grep -n` and `sed -n Np` number them: a line ends
/// at LF, and a CR right before the LF is part of that ending (CRLF, as Windows editors write it).
///
/// Why this exists: in Swift "\r\n" is one Character, so `text.split(separator: "\n")` never splits a
/// CRLF file. Every parser then saw the whole file as one line, and a CRLF sheduler.conf whose first
/// line was a comment scheduled nothing, silently (issue #9, finding 9). Configuration and job files
/// split their lines here and nowhere else.
///
/// CRLF is accepted: a file written on Windows means the same as on Linux. Any other line break
/// inside a line (a lone CR from an old Mac editor, VT, FF, NEL, U+2028, U+2029) is refused by the
/// parsers rather than guessed at: where such a line ends would differ between this parser, the
/// operator's editor and grep, and so would every line number in an error.
public enum TextLines {
    /// What the parsers say they expected when a line holds a stray line break.
    public static let expectation = "expected lines ending in LF or CRLF"

    /// Each line without its ending; line N (1-based) is element N-1. A final ending yields an empty
    /// last element, as `split(omittingEmptySubsequences: false)` does.
    public static func split(_ text: String) -> [Substring] {
        // Unicode breaks graphemes before and after every control character except between CR and LF,
        // so an LF is a Character of its own or the end of "\r\n": these two are every LF there is.
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    /// What is wrong with `line` (which `split` has already cut at LF and CRLF) if it holds a line break
    /// of another kind, as the rest of an error message; nil when it holds none.
    public static func strayBreakProblem(in line: Substring) -> String? {
        guard let c = line.first(where: \.isNewline) else { return nil }
        let what: String
        if c == "\r" {
            what = "a lone carriage return (CR)"
        } else {
            let hex = c.unicodeScalars.first.map { String($0.value, radix: 16, uppercase: true) } ?? "?"
            what = "a line break character U+\(String(repeating: "0", count: max(0, 4 - hex.count)))\(hex)"
        }
        return "\(what) inside the line; \(expectation)"
    }
}
