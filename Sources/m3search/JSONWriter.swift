import Foundation

/// A small JSON writer for large float arrays: Swift's shortest round-trip float
/// formatting, no intermediate Foundation objects, one buffered write per record.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init(reserving capacity: Int = 1 << 16) { bytes.reserveCapacity(capacity) }

    mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }

    mutating func number(_ v: Float) {
        if v.isFinite { raw(v.description) } else { raw("null") }
    }

    mutating func number(_ v: Int) { raw(String(v)) }

    mutating func floats<C: Collection>(_ values: C) where C.Element == Float {
        bytes.append(UInt8(ascii: "["))
        var first = true
        for v in values {
            if !first { bytes.append(UInt8(ascii: ",")) }
            number(v)
            first = false
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func string(_ s: String) {
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

    mutating func flush(to handle: FileHandle = .standardOutput) {
        handle.write(Data(bytes))
        bytes.removeAll(keepingCapacity: true)
    }
}
