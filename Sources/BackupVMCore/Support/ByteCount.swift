import Foundation

/// A size for people: exact bytes and, past a KiB, the binary unit (`17179869184 bytes (16.0 GiB)`).
/// Free-space messages show both: the bytes to compare with lvs, the unit to read at a glance.
public struct ByteCount: CustomStringConvertible, Sendable {
    public let bytes: Int64

    public init(_ bytes: Int64) { self.bytes = bytes }

    public var description: String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit: String?
        for u in units where value >= 1024 {
            value /= 1024
            unit = u
        }
        return unit.map { "\(bytes) bytes (\(String(format: "%.1f", value)) \($0))" } ?? "\(bytes) bytes"
    }
}
