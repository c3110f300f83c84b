import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// Memory sizes in domain XML (`<memory unit='GiB'>4</memory>`), in libvirt's units (KiB when none
/// is given; `KB`, `MB`, ... are powers of 1000, `k`/`KiB`, `M`/`MiB`, ... powers of 1024).
enum DomainMemory {
    static let units: [String: Int64] = {
        var units: [String: Int64] = ["b": 1, "bytes": 1]
        var binary: Int64 = 1
        var decimal: Int64 = 1
        for letter in ["k", "m", "g", "t", "p", "e"] {
            binary *= 1024
            decimal *= 1000
            units[letter] = binary
            units[letter + "ib"] = binary
            units[letter + "b"] = decimal
        }
        return units
    }()

    /// The size in bytes; nil when the element holds no whole number of a known unit (or one that
    /// does not fit in 63 bits).
    static func bytes(_ element: XMLElement) -> Int64? {
        let unit = (element.attribute(forName: "unit")?.stringValue ?? "KiB").lowercased()
        let text = (element.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let scale = units[unit], !text.isEmpty, text.allSatisfy(\.isASCII), let value = Int64(text), value >= 0
        else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }
}

extension DomainXML {
    /// What the domain may use: the larger of <memory> and <currentMemory> (libvirt gives qemu
    /// <memory>; the balloon only lends part of it back). A domain without a readable <memory> is
    /// refused: what cannot be read is never taken as small.
    public static func memoryBytes(of xml: String) throws(Problem) -> Int64 {
        try memoryBytes(of: try storedDomain(xml).1)
    }

    static func memoryBytes(of root: XMLElement) throws(Problem) -> Int64 {
        guard let memory = root.elements(forName: "memory").first.flatMap(DomainMemory.bytes), memory > 0 else {
            throw Problem(description: "the domain XML has no <memory> this tool can read")
        }
        guard let current = root.elements(forName: "currentMemory").first else { return memory }
        guard let bytes = DomainMemory.bytes(current) else {
            throw Problem(description: "the domain XML has a <currentMemory> this tool cannot read")
        }
        return max(memory, bytes)
    }
}
