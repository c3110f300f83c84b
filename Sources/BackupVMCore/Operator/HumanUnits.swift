import Foundation

/// Short forms for tables people read: sizes in binary units, durations and ages.
public enum HumanUnits {
    /// `512 B`, `1.5 MiB`, `3.2 GiB`.
    public static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return String(format: i == 0 ? "%.0f %@" : "%.1f %@", v, units[i])
    }

    /// `45s`, `12m05s`, `3h07m`, `2d04h`.
    public static func duration(_ seconds: Double) -> String {
        let s = Int(max(seconds, 0).rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        if s < 86400 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        return String(format: "%dd%02dh", s / 86400, (s % 86400) / 3600)
    }

    /// `1.5 MiB/s`.
    public static func rate(_ bytesPerSecond: Double) -> String { size(Int64(bytesPerSecond)) + "/s" }
}
