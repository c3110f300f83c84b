/// ISO weekdays, Monday = 1 ... Sunday = 7, as a set; parsed from the schedule's day field.
public struct Weekdays: Sendable, Equatable, CustomStringConvertible {
    public private(set) var days: Set<Int>

    public init(_ days: Set<Int>) { self.days = days }

    public static let all = Weekdays(Set(1...7))
    public static let expectation =
        "weekdays as * (every day), names (Mon,Tue,...; Mon-Fri) or numbers 1-7 (1 = Monday, 0 or 7 = Sunday)"

    public func contains(isoWeekday: Int) -> Bool { days.contains(isoWeekday) }

    static let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    static let longNames = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

    /// `*`, `daily`, `Mon,Wed,Fri`, `Mon-Fri`, `1-5`, `Sat,Sun`; case-insensitive. nil when malformed.
    public static func parse(_ text: String) -> Weekdays? {
        let t = text.lowercased()
        if t == "*" || t == "daily" || t == "all" { return .all }
        var days = Set<Int>()
        for item in t.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count) else { return nil }
            guard let from = day(bounds[0]), let to = day(bounds.last!) else { return nil }
            if from <= to {
                days.formUnion(from...to)
            } else {
                // Fri-Mon wraps over the weekend.
                days.formUnion(from...7)
                days.formUnion(1...to)
            }
        }
        return days.isEmpty ? nil : Weekdays(days)
    }

    static func day(_ s: Substring) -> Int? {
        if let n = Int(s) {
            guard (0...7).contains(n) else { return nil }
            return n == 0 ? 7 : n
        }
        if let i = names.firstIndex(of: String(s)) { return i + 1 }
        if let i = longNames.firstIndex(of: String(s)) { return i + 1 }
        return nil
    }

    public var description: String {
        if days.count == 7 { return "*" }
        return days.sorted().map { Weekdays.names[$0 - 1].capitalized }.joined(separator: ",")
    }
}
