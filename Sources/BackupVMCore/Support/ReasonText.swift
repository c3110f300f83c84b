/// Every reason, warning or problem this tool writes into a record (a job's result, a verify or
/// restore-test record, the attention mark, the notifier's environment) comes from somewhere it does
/// not control: a helper's failure frame, the last line of a remote command's stderr, a guest's console.
/// It is written as one line of at most `limit` bytes with control characters removed, so that a
/// record always stays small enough to be read back (a job record over the spool's size limit could
/// not be: the notifier was skipped, failures in a row were not counted, the tick retried forever)
/// and no escape sequence reaches an operator's terminal.
public enum ReasonText {
    public static let limit = 500

    public static func oneLine(_ text: String, limit: Int = ReasonText.limit) -> String {
        var out = String.UnicodeScalarView()
        var bytes = 0
        var cut = false
        for scalar in text.unicodeScalars {
            let v = scalar.value
            let replacement: Unicode.Scalar?
            switch v {
            case 0x0A, 0x0D, 0x09, 0x0B, 0x0C, 0x85, 0x2028, 0x2029: replacement = " "
            case 0x00..<0x20, 0x7F, 0x80..<0xA0, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: replacement = nil
            default: replacement = scalar
            }
            guard let r = replacement else { continue }
            let size = String(r).utf8.count
            if bytes + size > limit {
                cut = true
                break
            }
            out.append(r)
            bytes += size
        }
        var line = String(out)
        if cut {
            let marker = " [...]"
            while line.utf8.count + marker.utf8.count > limit, !line.isEmpty { line.removeLast() }
            line += marker
        }
        return line
    }
}
