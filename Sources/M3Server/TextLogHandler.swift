import Foundation
import Logging

/// One line per event on stderr, for people reading a terminal:
/// `2026-11-29T14:00:00.123Z info m3search: request method=DELETE path="/documents/a b" status=404`.
///
/// Values come from requests (paths, ids in error messages), so a value that could be
/// mistaken for log structure is quoted and escaped: a newline in a document id is written
/// `\n` and can never start a forged line, and a space or `=` cannot forge a `key=value`
/// pair. swift-log's StreamLogHandler prints values raw, which let a `%0A` in a DELETE id
/// write a line of the attacker's choosing.
public struct TextLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let write: @Sendable (String) -> Void
    private static let lock = NSLock()   // one line per write, never interleaved
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    public init(label: String) {
        self.init(label: label) { line in
            TextLogHandler.lock.lock()
            defer { TextLogHandler.lock.unlock() }
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// `write` gets each finished line, newline included (tests capture them).
    package init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        if let error = event.error { fields["error"] = "\(error)" }
        var line = Date().formatted(Self.timeFormat) + " " + event.level.rawValue + " " + Self.escaped(label) + ": "
            + Self.escaped(event.message.description)
        for key in fields.keys.sorted() {
            line += " " + Self.escaped(key) + "=" + Self.escaped(fields[key]!.description)
        }
        write(line + "\n")
    }

    /// The text as is when it holds only visible characters other than `"`, `\` and `=`;
    /// else quoted, with `"` and `\` escaped, and every control character, line or
    /// paragraph separator written as an escape.
    static func escaped(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy { s in
            s.value > 0x20 && s != "\"" && s != "\\" && s != "=" && !Self.isControlOrSeparator(s)
        }
        if plain { return text }
        var out = "\""
        for s in text.unicodeScalars {
            switch s {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Self.isControlOrSeparator(s) {
                    out += "\\u{" + String(s.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(s)
                }
            }
        }
        return out + "\""
    }

    /// C0 and C1 controls, DEL, and the characters terminals or log viewers treat as line
    /// breaks or use to reorder text (U+2028, U+2029, bidi overrides and isolates).
    private static func isControlOrSeparator(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
