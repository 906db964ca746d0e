// A strict JSON reader for the small JSON documents of a model folder (config.json, the
// safetensors header) and for the lines of an `m3search export` file.
//
// Foundation's parsers are the wrong tool for untrusted model files: a duplicate key
// silently keeps one value, numbers arrive as Double (so `1e19` reaches an Int conversion
// that traps), and nesting depth is unbounded. Here numbers keep their text, objects
// keep their keys in order and refuse duplicates, and depth is capped.

import Foundation

/// One JSON value; numbers are the literal text, checked against the RFC 8259 grammar.
package enum StrictJSON: Equatable, Sendable {
    case object([(key: String, value: StrictJSON)])
    case array([StrictJSON])
    /// An array of numbers only, read straight into float32s (correctly rounded from the text
    /// by strtof, never through Double, which could round twice): only when parsing with
    /// `numberArraysAsFloats`, for the vectors that make up most of an export.
    case floats([Float])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    package static func == (a: StrictJSON, b: StrictJSON) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): x == y
        case let (.floats(x), .floats(y)): x == y
        case let (.string(x), .string(y)), let (.number(x), .number(y)): x == y
        case let (.bool(x), .bool(y)): x == y
        case (.null, .null): true
        default: false
        }
    }

    /// Why a document was refused, with the byte offset (from 1) where it happened.
    package struct Failure: Error, CustomStringConvertible {
        package let offset: Int
        package let message: String
        package var description: String { "\(message) at byte \(offset + 1)" }
    }

    static let maxDepth = 64

    /// Parses one complete document; only whitespace may follow the value.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> StrictJSON {
        try parse(bytes, numberArraysAsFloats: false)
    }

    /// Parses one complete document; with `numberArraysAsFloats`, an array of numbers only
    /// becomes `.floats`.
    package static func parse(_ bytes: [UInt8], numberArraysAsFloats: Bool = false) throws -> StrictJSON {
        guard numberArraysAsFloats else { return try bytes.withUnsafeBytes { try parse($0) } }
        // A NUL after the text lets strtof run on the buffer in place: it stops there at the latest.
        var terminated = bytes
        terminated.append(0)
        return try terminated.withUnsafeBytes { try parse(UnsafeRawBufferPointer(rebasing: $0[..<bytes.count]), numberArraysAsFloats: true) }
    }

    /// `numberArraysAsFloats` needs a readable NUL byte just past `bytes`.
    private static func parse(_ bytes: UnsafeRawBufferPointer, numberArraysAsFloats: Bool) throws -> StrictJSON {
        var parser = Parser(bytes: bytes, numberArraysAsFloats: numberArraysAsFloats)
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.i == bytes.count else { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    /// The member `key` of an object (nil for other values or an absent key).
    package subscript(key: String) -> StrictJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    package var kind: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .floats: "an array of numbers"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }

    /// The number as an Int when its text is an integer (no fraction, no exponent) that
    /// fits; `1e19`, `2.5` or `99999999999999999999` give nil, never a trap.
    var exactInt: Int? {
        guard case .number(let text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int(text)
    }

    /// The number as a Double (may be ±infinity for huge exponents; callers check).
    var double: Double? {
        guard case .number(let text) = self else { return nil }
        return Double(text)
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        let numberArraysAsFloats: Bool
        var i = 0

        func fail(_ message: String) -> Failure { Failure(offset: i, message: message) }

        mutating func skipWhitespace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        }

        mutating func value(depth: Int) throws -> StrictJSON {
            guard depth < StrictJSON.maxDepth else { throw fail("nesting deeper than \(StrictJSON.maxDepth) levels") }
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of the document") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(key: String, value: StrictJSON)] = []
                var seen = Set<String>()
                skipWhitespace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a quoted key") }
                    let keyStart = i
                    let key = try string()
                    guard seen.insert(key).inserted else { throw Failure(offset: keyStart, message: "duplicate key \"\(key)\"") }
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(key)\"") }
                    i += 1
                    members.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    guard i < bytes.count else { throw fail("unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    throw fail("expected ',' or '}' in an object")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [StrictJSON] = []
                skipWhitespace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                if numberArraysAsFloats {
                    let first = i
                    if let floats = try numberArray() { return .floats(floats) }
                    i = first  // not numbers only: parse the general way
                }
                while true {
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard i < bytes.count else { throw fail("unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw fail("expected ',' or ']' in an array")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = i
                try scanNumber()
                return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start ..< i]), as: UTF8.self))
            default:
                throw fail("unexpected byte 0x\(String(bytes[i], radix: 16))")
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count,
                  UnsafeRawBufferPointer(rebasing: bytes[i ..< i + n]).elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: n))
            else { throw fail("invalid literal") }
            i += n
        }

        /// The rest of an array whose elements are all numbers, as float32s; nil (position
        /// undefined) when an element is not a number.
        mutating func numberArray() throws -> [Float]? {
            var out: [Float] = []
            while true {
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "-") || (bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")) else {
                    return nil
                }
                let start = i
                try scanNumber()
                // The text matched the JSON grammar, which strtof accepts in full; the NUL
                // past the buffer stops it at the latest.
                guard let base = bytes.baseAddress else { return nil }
                var end: UnsafeMutablePointer<CChar>?
                let v = strtof(base.assumingMemoryBound(to: CChar.self) + start, &end)
                guard let end, UnsafeRawPointer(end) == base + i else { throw Failure(offset: start, message: "invalid number") }
                out.append(v)
                skipWhitespace()
                guard i < bytes.count else { throw fail("unterminated array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return out }
                return nil
            }
        }

        /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
        mutating func scanNumber() throws {
            func digits() -> Int {
                let s = i
                while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
                return i - s
            }
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count else { throw fail("invalid number") }
            if bytes[i] == UInt8(ascii: "0") { i += 1 } else if digits() == 0 { throw fail("invalid number") }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw fail("invalid number: digits expected after '.'") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw fail("invalid number: digits expected in the exponent") }
            }
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            var out = [UInt8]()
            while true {
                guard i < bytes.count else { throw fail("unterminated string") }
                let b = bytes[i]
                if b == UInt8(ascii: "\"") { i += 1; break }
                if b < 0x20 { throw fail("control character in a string") }
                if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("unpaired surrogate escape")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: String(unicode).utf8)
                default: throw fail("invalid escape")
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
            return s
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("invalid \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let digit: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
                default: throw fail("invalid \\u escape")
                }
                v = v << 4 | UInt32(digit)
                i += 1
            }
            return v
        }
    }
}
