/// What is wrong with a stream of frames: each names what arrived and what was expected, so a job
/// that fails on a hostile or broken helper says why in one line.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case truncated(expected: Int, got: Int, what: String)
    case unknownTag(UInt8)
    case payloadTooLong(tag: UInt8, length: Int, limit: Int)
    case badPayload(tag: UInt8, length: Int, expected: String)
    case io(operation: String, errno: Int32)
    case stalled(seconds: Int)

    public var description: String {
        switch self {
        case .truncated(let expected, let got, let what):
            return "the stream ended inside \(what): \(got) of \(expected) bytes"
        case .unknownTag(let tag):
            return "unknown frame type \(WireError.show(tag)) (expected one of H D Z C E X)"
        case .payloadTooLong(let tag, let length, let limit):
            return "frame \(WireError.show(tag)) announces \(length) bytes (at most \(limit))"
        case .badPayload(let tag, let length, let expected):
            return "frame \(WireError.show(tag)) of \(length) bytes: expected \(expected)"
        case .io(let operation, let errno):
            return "\(operation) failed (errno \(errno))"
        case .stalled(let seconds):
            return "no byte from the helper for \(seconds) s"
        }
    }

    static func show(_ tag: UInt8) -> String {
        (0x21...0x7e).contains(tag) ? "'\(Character(Unicode.Scalar(tag)))'" : "0x" + String(tag, radix: 16)
    }
}
