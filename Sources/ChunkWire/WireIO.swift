#if canImport(Glibc)
    import Glibc
#endif

/// Where frames are read from: a pipe or ssh's output. `read` returns 0 at end of stream.
public protocol ByteSource {
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A plain blocking file descriptor (the helper's stdin and disk source).
public struct FileDescriptorSource: ByteSource {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw WireError.io(operation: "read", errno: errno)
        }
    }
}

public enum WireIO {
    /// Reads until `buffer` is full or the stream ends; returns how many bytes were read.
    public static func readFully<S: ByteSource>(_ source: inout S, into buffer: UnsafeMutableRawBufferPointer) throws
        -> Int
    {
        var done = 0
        while done < buffer.count {
            let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes every byte (retrying short writes and EINTR).
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw WireError.io(operation: "write", errno: errno)
            }
            done += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0) }
    }
}
