import Foundation
import Logging
import M3Search

/// One JSON object per log line on stderr, for log collectors:
/// `{"time":"2026-11-29T14:00:00.123Z","level":"info","label":"m3search","message":"request","hb.request.id":"…","status":"200",…}`.
/// Metadata values are strings (nested values are printed as swift-log prints them).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private static let lock = NSLock()   // one line per write, never interleaved
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)   // UTC, "…Z"

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        if let error = event.error { fields["error"] = "\(error)" }
        var out = JSONWriter(reserving: 256)
        out.raw("{\"time\":"); out.string(Date().formatted(Self.timeFormat))
        out.raw(",\"level\":"); out.string(event.level.rawValue)
        out.raw(",\"label\":"); out.string(label)
        out.raw(",\"message\":"); out.string(event.message.description)
        for key in fields.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
            out.raw(","); out.string(key); out.raw(":"); out.string(fields[key]!.description)
        }
        out.raw("}\n")
        Self.lock.lock()
        defer { Self.lock.unlock() }
        FileHandle.standardError.write(Data(out.bytes))
    }
}
