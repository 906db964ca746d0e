// A small, strict XML reader for the parts of documents that hold text (DOCX
// word/document.xml, ODT content.xml, EPUB OPF and XHTML). It reports elements and text
// and nothing more, and refuses what could blow up: a DOCTYPE with an internal subset
// (where entity declarations, "billion laughs", live) and nesting deeper than `maxDepth`.
// Only the five predefined entities and character references are decoded; any other
// `&name;` stays as written.

/// One thing the scanner met, in document order.
enum XMLEvent {
    /// `name` as written, prefix included ("w:p"); attribute names likewise.
    case start(name: String, attributes: [String: String])
    case end(name: String)
    case text(String)
}

enum XMLScanner {
    static let maxDepth = 256

    /// Scans `bytes` (UTF-8) calling `handler` for each event.
    /// Throws `DocumentError.malformed` naming the first problem and its byte offset.
    static func scan(_ bytes: [UInt8], handler: (XMLEvent) throws -> Void) throws {
        var i = 0
        let n = bytes.count
        var open: [String] = []
        func fail(_ why: String) -> DocumentError { .malformed("XML: \(why) at byte \(i)") }
        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard !needle.isEmpty, n >= needle.count else { return nil }
            var k = start
            while k <= n - needle.count {
                if bytes[k] == needle[0] && bytes[k ..< k + needle.count].elementsEqual(needle) { return k }
                k += 1
            }
            return nil
        }
        func startsWith(_ s: String, at k: Int) -> Bool {
            let u = Array(s.utf8)
            return k + u.count <= n && bytes[k ..< k + u.count].elementsEqual(u)
        }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
        func isNameByte(_ b: UInt8) -> Bool {
            !isSpace(b) && b != UInt8(ascii: "/") && b != UInt8(ascii: ">") && b != UInt8(ascii: "=") && b != UInt8(ascii: "<")
                && b != UInt8(ascii: "\"") && b != UInt8(ascii: "'")
        }
        func name(at k: inout Int) throws -> String {
            let s = k
            while k < n, isNameByte(bytes[k]) { k += 1 }
            guard k > s else { throw fail("expected a name") }
            return String(decoding: bytes[s ..< k], as: UTF8.self)
        }
        func emitText(_ slice: ArraySlice<UInt8>) throws {
            guard !slice.isEmpty else { return }
            guard !open.isEmpty else {
                // Only white space may sit outside the root element.
                if slice.allSatisfy(isSpace) { return }
                throw fail("text outside the root element")
            }
            try handler(.text(decodeReferences(slice)))
        }

        var textStart = 0
        while i < n {
            guard bytes[i] == UInt8(ascii: "<") else { i += 1; continue }
            try emitText(bytes[textStart ..< i])
            if startsWith("<!--", at: i) {
                guard let e = find(Array("-->".utf8), from: i + 4) else { throw fail("unterminated comment") }
                i = e + 3
            } else if startsWith("<![CDATA[", at: i) {
                guard let e = find(Array("]]>".utf8), from: i + 9) else { throw fail("unterminated CDATA section") }
                guard !open.isEmpty else { throw fail("CDATA outside the root element") }
                try handler(.text(String(decoding: bytes[(i + 9) ..< e], as: UTF8.self)))
                i = e + 3
            } else if startsWith("<?", at: i) {
                guard let e = find(Array("?>".utf8), from: i + 2) else { throw fail("unterminated processing instruction") }
                i = e + 2
            } else if startsWith("<!", at: i) {
                // <!DOCTYPE …>: an internal subset "[" could declare entities; refuse it.
                var k = i + 2
                while k < n, bytes[k] != UInt8(ascii: ">") {
                    if bytes[k] == UInt8(ascii: "[") { throw fail("a DOCTYPE with an internal subset (entity declarations are not read)") }
                    k += 1
                }
                guard k < n else { throw fail("unterminated declaration") }
                i = k + 1
            } else if startsWith("</", at: i) {
                var k = i + 2
                let tag = try name(at: &k)
                while k < n, isSpace(bytes[k]) { k += 1 }
                guard k < n, bytes[k] == UInt8(ascii: ">") else { throw fail("unterminated end tag </\(tag)") }
                guard let top = open.last, top == tag else {
                    throw fail("end tag </\(tag)> does not close <\(open.last ?? "nothing")>")
                }
                open.removeLast()
                try handler(.end(name: tag))
                i = k + 1
            } else {
                var k = i + 1
                let tag = try name(at: &k)
                var attributes: [String: String] = [:]
                var selfClosing = false
                while true {
                    while k < n, isSpace(bytes[k]) { k += 1 }
                    guard k < n else { throw fail("unterminated tag <\(tag)") }
                    if bytes[k] == UInt8(ascii: ">") { k += 1; break }
                    if bytes[k] == UInt8(ascii: "/") {
                        guard k + 1 < n, bytes[k + 1] == UInt8(ascii: ">") else { throw fail("stray / in <\(tag)") }
                        selfClosing = true
                        k += 2
                        break
                    }
                    let attribute = try name(at: &k)
                    while k < n, isSpace(bytes[k]) { k += 1 }
                    guard k < n, bytes[k] == UInt8(ascii: "=") else { throw fail("attribute \(attribute) of <\(tag)> has no value") }
                    k += 1
                    while k < n, isSpace(bytes[k]) { k += 1 }
                    guard k < n, bytes[k] == UInt8(ascii: "\"") || bytes[k] == UInt8(ascii: "'") else {
                        throw fail("attribute \(attribute) of <\(tag)> is not quoted")
                    }
                    let quote = bytes[k]
                    let valueStart = k + 1
                    k = valueStart
                    while k < n, bytes[k] != quote {
                        if bytes[k] == UInt8(ascii: "<") { throw fail("'<' in attribute \(attribute) of <\(tag)>") }
                        k += 1
                    }
                    guard k < n else { throw fail("unterminated attribute \(attribute) of <\(tag)>") }
                    attributes[attribute] = decodeReferences(bytes[valueStart ..< k])
                    k += 1
                }
                guard open.count < maxDepth else { throw fail("elements nested deeper than \(maxDepth)") }
                try handler(.start(name: tag, attributes: attributes))
                if selfClosing { try handler(.end(name: tag)) } else { open.append(tag) }
                i = k
            }
            textStart = i
        }
        try emitText(bytes[min(textStart, n) ..< n])
        if let unclosed = open.last { throw DocumentError.malformed("XML: the file ends inside <\(unclosed)>") }
    }

    /// Text with `&lt;` `&gt;` `&amp;` `&quot;` `&apos;` and `&#…;` decoded.
    static func decodeReferences(_ slice: ArraySlice<UInt8>) -> String {
        guard slice.contains(UInt8(ascii: "&")) else { return String(decoding: slice, as: UTF8.self) }
        var out = String.UnicodeScalarView()
        let s = String(decoding: slice, as: UTF8.self).unicodeScalars
        var it = s.startIndex
        while it < s.endIndex {
            let c = s[it]
            if c == "&", let semi = s[it...].prefix(12).firstIndex(of: ";") {
                let entity = String(String.UnicodeScalarView(s[s.index(after: it) ..< semi]))
                var decoded: Unicode.Scalar?
                switch entity {
                case "lt": decoded = "<"
                case "gt": decoded = ">"
                case "amp": decoded = "&"
                case "quot": decoded = "\""
                case "apos": decoded = "'"
                default:
                    if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                        decoded = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                    } else if entity.hasPrefix("#") {
                        decoded = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init)
                    }
                }
                if let decoded {
                    out.append(decoded)
                    it = s.index(after: semi)
                    continue
                }
            }
            out.append(c)
            it = s.index(after: it)
        }
        return String(out)
    }
}
