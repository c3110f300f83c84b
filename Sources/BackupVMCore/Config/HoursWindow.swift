import Foundation

/// BackupHours: the daily window in which backups may START (they may finish later).
/// `22-04` crosses midnight; `0-24` is the whole day. Minutes are optional: `21:30-05:15`.
public struct HoursWindow: Sendable, Equatable, CustomStringConvertible {
    /// Minutes after local midnight, start inclusive, end exclusive; end may be 1440 (24:00).
    public let startMinute: Int
    public let endMinute: Int

    public static let expectation =
        "a window START-END of hours 0-24 (optionally HH:MM), e.g. 22-06 or 0-24; start and end must differ"

    public init(startMinute: Int, endMinute: Int) {
        self.startMinute = startMinute
        self.endMinute = endMinute
    }

    public static let wholeDay = HoursWindow(startMinute: 0, endMinute: 1440)

    public var crossesMidnight: Bool { endMinute < startMinute }

    public static func parse(_ text: String) -> HoursWindow? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let s = minute(parts[0]), let e = minute(parts[1]) else { return nil }
        // 24:00 only makes sense as an end, 0-0 / 5-5 is empty: both are refused.
        guard s < 1440, s != e, !(s == 0 && e == 0) else { return nil }
        if e == 1440 || s < e { return HoursWindow(startMinute: s, endMinute: e) }
        return HoursWindow(startMinute: s, endMinute: e == 1440 ? 0 : e)
    }

    static func minute(_ s: Substring) -> Int? {
        let hm = s.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(hm.count), hm.allSatisfy({ !$0.isEmpty && $0.count <= 2 && $0.allSatisfy(\.isNumber) }),
            let h = Int(hm[0])
        else { return nil }
        let m = hm.count == 2 ? Int(hm[1]) ?? 99 : 0
        guard (0...24).contains(h), (0...59).contains(m), !(h == 24 && m != 0) else { return nil }
        return h * 60 + m
    }

    /// Is a wall-clock time (minutes after midnight) inside the window?
    public func contains(minuteOfDay m: Int) -> Bool {
        crossesMidnight ? (m >= startMinute || m < endMinute) : (m >= startMinute && m < endMinute)
    }

    public var description: String {
        func fmt(_ m: Int) -> String { m % 60 == 0 ? "\(m / 60)" : String(format: "%d:%02d", m / 60, m % 60) }
        return "\(fmt(startMinute))-\(fmt(endMinute))"
    }
}
