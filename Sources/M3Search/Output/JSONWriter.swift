import Foundation

/// A small JSON writer for large float arrays: Swift's shortest round-trip float
/// formatting, no intermediate Foundation objects, one buffered write per record.
/// Shared by the CLI's JSON outputs and the HTTP server's responses.
package struct JSONWriter {
    package private(set) var bytes: [UInt8] = []

    package init(reserving capacity: Int = 1 << 16) { bytes.reserveCapacity(capacity) }

    package mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }

    package mutating func number(_ v: Float) {
        if v.isFinite { raw(v.description) } else { raw("null") }
    }

    package mutating func number(_ v: Double) {
        if v.isFinite { raw(v.description) } else { raw("null") }
    }

    package mutating func number(_ v: Int) { raw(String(v)) }

    package mutating func number(_ v: Float?) {
        if let v { number(v) } else { raw("null") }
    }

    package mutating func floats<C: Collection>(_ values: C) where C.Element == Float {
        bytes.append(UInt8(ascii: "["))
        var first = true
        for v in values {
            if !first { bytes.append(UInt8(ascii: ",")) }
            number(v)
            first = false
        }
        bytes.append(UInt8(ascii: "]"))
    }

    package mutating func string(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": raw("\\\"")
            case "\\": raw("\\\\")
            case "\n": raw("\\n")
            case "\r": raw("\\r")
            case "\t": raw("\\t")
            case _ where scalar.value < 0x20:
                raw(String(format: "\\u%04x", scalar.value))
            default: bytes.append(contentsOf: String(scalar).utf8)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Hands the bytes written so far to `write` (which must take them all or throw), then
    /// empties the buffer.
    package mutating func flush(into write: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes(write)
        bytes.removeAll(keepingCapacity: true)
    }

    package mutating func flush(to handle: FileHandle = .standardOutput) {
        handle.write(Data(bytes))
        bytes.removeAll(keepingCapacity: true)
    }
}
