import Foundation
import M3Documents

/// The kinds of files `m3search index` reads. Everything else is skipped and counted.
public enum DocumentKind: String, Sendable, CaseIterable {
    case text, markdown, restructuredText = "rst", html, source
    /// Read through M3Documents: text with page or section locations.
    case pdf, docx, odt, epub

    static let byExtension: [String: DocumentKind] = {
        var map: [String: DocumentKind] = [
            "txt": .text, "text": .text, "log": .text, "csv": .text, "tsv": .text,
            "md": .markdown, "markdown": .markdown, "mdx": .markdown,
            "rst": .restructuredText, "rest": .restructuredText,
            "html": .html, "htm": .html, "xhtml": .html,
            "pdf": .pdf, "docx": .docx, "odt": .odt, "epub": .epub,
        ]
        for ext in ["swift", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "m", "mm", "py", "pyi", "js", "mjs", "ts", "tsx", "jsx",
                    "java", "kt", "kts", "scala", "go", "rs", "rb", "php", "pl", "pm", "sh", "bash", "zsh", "fish", "lua", "r",
                    "jl", "cs", "fs", "ex", "exs", "erl", "hs", "ml", "mli", "clj", "dart", "sql", "json", "yaml", "yml", "toml",
                    "ini", "cfg", "xml", "css", "scss", "vue", "svelte", "tex", "cmake", "gradle", "proto", "zig", "nim", "v"] {
            map[ext] = .source
        }
        return map
    }()

    /// Files without an extension that are text by convention.
    static let byName: Set<String> = ["readme", "license", "copying", "authors", "changelog", "news", "makefile",
                                      "dockerfile", "notice", "install", "todo"]

    /// The kind for a path, or nil when m3search does not read it.
    public static func of(path: String) -> DocumentKind? {
        let name = (path as NSString).lastPathComponent
        let ext = (name as NSString).pathExtension.lowercased()
        if ext.isEmpty { return byName.contains(name.lowercased()) ? .text : nil }
        return byExtension[ext]
    }
}

extension DocumentKind {
    /// The M3Documents format of a structured kind; nil for text kinds.
    var format: DocumentFormat? {
        switch self {
        case .pdf: return .pdf
        case .docx: return .docx
        case .odt: return .odt
        case .epub: return .epub
        case .text, .markdown, .restructuredText, .html, .source: return nil
        }
    }
}

/// A file read for indexing: its text (HTML reduced to text), and what identifies it.
struct ReadDocument: Sendable {
    var text: String
    var kind: DocumentKind
    var size: Int64
    var mtime: Double
    var contentHash: String
    /// The bytes were not valid UTF-8; the text holds U+FFFD replacement characters.
    var hadInvalidUTF8: Bool
    /// For PDF, DOCX, ODT, EPUB: where each page or section begins in `text` (Unicode
    /// scalars) and its metadata; empty for plain text.
    var locations: [(start: Int, metadata: [String: String])] = []
}

/// Why a file was not indexed.
enum SkipReason: Error, Equatable, Sendable {
    case unsupportedType
    case binary
    case empty
    case tooLarge(Int64)
    case unreadable(String)
    /// A PDF, DOCX, ODT or EPUB whose text cannot be read (broken, encrypted, hostile).
    case document(DocumentError)

    var summary: String {
        switch self {
        case .unsupportedType: return "unsupported type"
        case .binary: return "binary"
        case .empty: return "empty"
        case .tooLarge(let n): return "larger than the size limit (\(n) bytes)"
        case .unreadable(let why): return "unreadable: \(why)"
        case .document(let error): return error.description
        }
    }
}

/// read(2), named apart from `DocumentReader.read`.
private func readFile(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }

enum DocumentReader {
    /// Reads a file: type by name, binary by content (a NUL byte in the first 8 KiB),
    /// invalid UTF-8 decoded with replacement characters.
    static func read(path: String, kind: DocumentKind, maxBytes: Int64) -> Result<ReadDocument, SkipReason> {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            return .failure(.unreadable(error.localizedDescription))
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        if size > maxBytes { return .failure(.tooLarge(size)) }
        let data: Data
        switch readBounded(path: path, maxBytes: maxBytes, binary: kind.format != nil) {
        case .success(let d): data = d
        case .failure(let reason): return .failure(reason)
        }
        if data.isEmpty { return .failure(.empty) }
        if let format = kind.format {
            do {
                let limit = Int(min(maxBytes, Int64(Int32.max)))
                let extracted = try DocumentText.extract(Array(data), format: format, limits: ExtractionLimits(maxTextBytes: limit))
                let (text, starts) = extracted.joined()
                return .success(ReadDocument(text: text, kind: kind, size: Int64(data.count), mtime: mtime,
                                             contentHash: contentHash(data), hadInvalidUTF8: false,
                                             locations: zip(starts, extracted.segments).map { ($0, $1.metadata) }))
            } catch let error as DocumentError {
                return .failure(.document(error))
            } catch {
                return .failure(.unreadable("\(error)"))
            }
        }
        let (text, invalid) = decodeUTF8(data)
        let body = kind == .html ? HTMLText.extract(text) : text
        if body.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) { return .failure(.empty) }
        return .success(ReadDocument(text: body, kind: kind, size: Int64(data.count), mtime: mtime,
                                     contentHash: contentHash(data), hadInvalidUTF8: invalid))
    }

    /// The file's bytes, at most `maxBytes` of them: a regular file only (a FIFO or device
    /// would block or never end), the first 8 KiB checked for NUL before the rest is read
    /// (a huge binary file costs 8 KiB), and a file that grows past the limit while being
    /// read is skipped as too large rather than read without bound.
    /// `binary`: a format with its own reader (PDF, zip): NUL bytes are expected.
    static func readBounded(path: String, maxBytes: Int64, binary: Bool = false) -> Result<Data, SkipReason> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return .failure(.unreadable(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(.unreadable(String(cString: strerror(errno)))) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(.unreadable("not a regular file")) }
        var data = Data()
        let limit = Int(max(0, maxBytes))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let want = data.count < 8192 ? 8192 - data.count : min(chunk.count, limit + 1 - data.count)
            guard want > 0 else { return .failure(.tooLarge(Int64(data.count))) }
            let n = chunk.withUnsafeMutableBytes { readFile(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable(String(cString: strerror(errno))))
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0 ..< n])
            if !binary, data.count <= 8192, chunk[0 ..< n].contains(0) { return .failure(.binary) }
            if data.count > limit { return .failure(.tooLarge(Int64(data.count))) }
        }
        return .success(data)
    }

    static func decodeUTF8(_ data: Data) -> (String, Bool) {
        if let valid = String(validating: data, as: UTF8.self) { return (valid, false) }
        return (String(decoding: data, as: UTF8.self), true)
    }

    /// 64-bit FNV-1a of the bytes, hex: detects changed content when size/mtime lie.
    static func contentHash(_ data: Data) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        data.withUnsafeBytes { raw in
            for b in raw { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        return String(h, radix: 16)
    }
}

/// The visible text of an HTML page: tags removed, `<script>`/`<style>` and comments
/// dropped, block elements turned into line breaks, character references decoded.
enum HTMLText {
    static let blockTags: Set<String> = ["p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
                                         "table", "section", "article", "header", "footer", "pre", "blockquote", "hr", "dt", "dd"]

    static func extract(_ html: String) -> String {
        let s = Array(html.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        func lowercasedWord(at j: Int) -> String {
            var k = j, w = ""
            while k < s.count, s[k].properties.isAlphabetic || ("0"..."9").contains(s[k]) { w.unicodeScalars.append(s[k]); k += 1 }
            return w.lowercased()
        }
        func find(_ needle: String, from j: Int) -> Int? {
            let n = Array(needle.unicodeScalars)
            var k = j
            while k + n.count <= s.count {
                var match = true
                for t in 0..<n.count where Character(s[k + t]).lowercased() != Character(n[t]).lowercased() { match = false; break }
                if match { return k }
                k += 1
            }
            return nil
        }
        func matches(_ needle: String, at j: Int) -> Bool {
            let n = Array(needle.unicodeScalars)
            return j + n.count <= s.count && (0 ..< n.count).allSatisfy { s[j + $0] == n[$0] }
        }
        // The first ">" at or after a position, remembered: "<<<<…>" would otherwise scan
        // to the same ">" from every "<" (quadratic time on hostile pages).
        var nextClose = -1
        func closingBracket(from j: Int) -> Int? {
            if nextClose >= j { return nextClose }
            guard let k = find(">", from: j) else { nextClose = s.count; return nil }
            nextClose = k
            return k
        }
        while i < s.count {
            let c = s[i]
            if c == "<" {
                if matches("<!--", at: i) {
                    i = (find("-->", from: i + 4).map { $0 + 3 }) ?? s.count
                    continue
                }
                let closing = i + 1 < s.count && s[i + 1] == "/"
                let name = lowercasedWord(at: i + (closing ? 2 : 1))
                guard let end = closingBracket(from: i), end < s.count else { break }
                if !closing && (name == "script" || name == "style") {
                    i = (find("</\(name)", from: end).flatMap { find(">", from: $0) }.map { $0 + 1 }) ?? s.count
                    continue
                }
                if blockTags.contains(name) { out.append("\n") }
                i = end + 1
                continue
            }
            if c == "&", let semi = (i + 1 ..< min(s.count, i + 12)).first(where: { s[$0] == ";" }) {
                let entity = String(String.UnicodeScalarView(s[(i + 1)..<semi]))
                if let decoded = decodeEntity(entity) {
                    out.append(decoded)
                    i = semi + 1
                    continue
                }
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    static func decodeEntity(_ e: String) -> Unicode.Scalar? {
        switch e {
        case "amp": return "&"
        case "lt": return "<"
        case "gt": return ">"
        case "quot": return "\""
        case "apos": return "'"
        case "nbsp": return "\u{00A0}"
        default: break
        }
        if e.hasPrefix("#x") || e.hasPrefix("#X") { return UInt32(e.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init) }
        if e.hasPrefix("#") { return UInt32(e.dropFirst()).flatMap(Unicode.Scalar.init) }
        return nil
    }
}
