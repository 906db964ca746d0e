import Foundation

/// What went wrong in the index file. The description says what happened and what to do,
/// in the library's terms; the command line adds its flag names (see M3SearchError).
public enum StoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// SQLite refused an operation (message, result code, and the SQL when there is one).
    case sqlite(path: String, code: Int32, message: String, sql: String?)
    /// The file is not an m3search index (another SQLite database, or not SQLite at all).
    case notAnIndex(path: String, detail: String)
    /// The index was written by a newer m3search.
    case newerFormat(path: String, found: Int, supported: Int)
    /// The index was built with another model or settings.
    case incompatible(path: String, detail: String)
    /// The index does not exist.
    case missing(path: String)
    /// Another writer holds the index's writer lock (see `WriterLock`); nil: it has not recorded itself yet.
    case locked(path: String, holder: WriterLock.Holder?)
    /// The writer lock file cannot be created or locked (e.g. a read-only folder).
    case lockUnavailable(path: String, detail: String)
    /// The index cannot be opened for writing (a read-only file system or file).
    case readOnly(path: String, detail: String)
    /// Stored bytes fail validation.
    case corrupt(path: String, detail: String)
    /// The filesystem holding the index is full (SQLITE_FULL, ENOSPC); the transaction rolled back.
    case diskFull(path: String)

    public var description: String {
        switch self {
        case .sqlite(let path, let code, let message, let sql):
            return "SQLite error \(code) on \(path): \(message)" + (sql.map { " [\($0.prefix(120))]" } ?? "")
        case .notAnIndex(let path, let detail):
            return "\(path) is not an m3search index (\(detail)); m3search never overwrites a foreign file."
        case .newerFormat(let path, let found, let supported):
            return "\(path) has index format \(found), newer than this m3search supports (\(supported)). Upgrade m3search."
        case .incompatible(let path, let detail):
            return "\(path) was built with different settings: \(detail)."
        case .missing(let path):
            return "No index at \(path)."
        case .locked(let path, let holder):
            return "index \(path) is locked by \(holder.map(\.description) ?? "another process") while it writes. "
                + "Wait for it to finish; searches are not blocked."
        case .lockUnavailable(let path, let detail):
            return "cannot take the writer lock of \(path): \(detail). Writing needs a writable folder; searching does not."
        case .readOnly(let path, let detail):
            return "\(path) cannot be written: \(detail). Writing needs a writable file and folder; searching does not."
        case .corrupt(let path, let detail):
            return "\(path) is damaged: \(detail). Rebuild it from the documents."
        case .diskFull(let path):
            return "the disk holding \(path) is full: free some space and run again (the index keeps its last committed state)."
        }
    }
}
