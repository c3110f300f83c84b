/// Quoting for words put into a remote shell command line. Every name reaching a remote shell has
/// already passed SafeName; quoting is the second fence, not the first.
public enum ShellQuote {
    /// `'...'` with embedded single quotes as `'\''`: the POSIX-safe form for any byte string.
    public static func quote(_ word: String) -> String {
        if !word.isEmpty, word.unicodeScalars.allSatisfy({ isPlain($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func isPlain(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
            || "/._-+=:,@%".unicodeScalars.contains(c)
    }
}
