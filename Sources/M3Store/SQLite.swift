import CSQLite
import Foundation

/// One SQLite connection. Not thread-safe by itself: the owner serialises access.
///
/// `package`: only M3Store runs SQL; tests use it to damage files on purpose.
package final class SQLiteConnection: @unchecked Sendable {
    package let path: String
    let handle: OpaquePointer
    /// The file in the registry of open database files (see OpenDatabaseFiles).
    private let fileID: OpenDatabaseFiles.FileID?

    /// `immutable`: read-only without WAL shared memory or locks, for a file on read-only
    /// media that nobody can be writing (SQLite's `immutable=1` URI parameter).
    package enum Mode: Sendable { case readOnly, readWrite, create, immutable }

    package init(path: String, mode: Mode) throws {
        self.path = path
        var db: OpaquePointer?
        let flags: Int32
        switch mode {
        case .readOnly: flags = SQLITE_OPEN_READONLY
        case .readWrite: flags = SQLITE_OPEN_READWRITE
        case .create: flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        case .immutable: flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
        }
        let name = mode == .immutable ? URL(fileURLWithPath: path).absoluteString + "?immutable=1" : path
        let rc = sqlite3_open_v2(name, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw StoreError.sqlite(path: path, code: rc, message: message, sql: nil)
        }
        // An index file is untrusted input: harden the connection before it reads a byte
        // of the schema (see m3_sqlite_harden), and bound the SQL it will prepare.
        let hardened = m3_sqlite_harden(db)
        guard hardened == SQLITE_OK else {
            sqlite3_close_v2(db)
            throw StoreError.sqlite(path: path, code: hardened, message: "cannot enable SQLite's defensive mode", sql: nil)
        }
        sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, Self.maximumSQLLength)
        handle = db
        fileID = OpenDatabaseFiles.retain(path)
        sqlite3_busy_timeout(db, 5000)
        sqlite3_extended_result_codes(db, 1)
    }

    /// The longest SQL text a connection prepares (SQLite's default is 1 GB); m3search's
    /// longest statement binds its values, so 1 MB is far above what it needs.
    static let maximumSQLLength: Int32 = 1 << 20

    /// Runs `body` with a time limit on every statement it runs: SQLite's progress handler
    /// interrupts a statement still running after `seconds` (SQLITE_INTERRUPT, reported as
    /// damage). Used while an untrusted file is opened and its schema verified, so nothing
    /// in the file can make the open spin.
    package func withTimeLimit<T>(seconds: Double, _ body: () throws -> T) throws -> T {
        let deadline = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        deadline.initialize(to: Self.monotonicSeconds() + seconds)
        sqlite3_progress_handler(handle, 1000, { context in
            guard let context else { return 0 }
            return SQLiteConnection.monotonicSeconds() > context.assumingMemoryBound(to: Double.self).pointee ? 1 : 0
        }, deadline)
        defer {
            sqlite3_progress_handler(handle, 0, nil, nil)
            deadline.deallocate()
        }
        do { return try body() } catch StoreError.sqlite(_, let code, _, let sql) where code == SQLITE_INTERRUPT {
            throw StoreError.corrupt(path: path, detail: "a query ran longer than \(Int(seconds)) s while the index was opened"
                + (sql.map { " [\($0.prefix(80))]" } ?? ""))
        }
    }

    static func monotonicSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    deinit {
        sqlite3_close_v2(handle)
        OpenDatabaseFiles.release(fileID)
    }

    func error(_ code: Int32, sql: String? = nil) -> StoreError {
        let message = String(cString: sqlite3_errmsg(handle))
        if code & 0xff == SQLITE_NOTADB {
            return .notAnIndex(path: path, detail: "not an SQLite database")
        }
        if isDiskFull(code) { return .diskFull(path: path) }
        if code & 0xff == SQLITE_CORRUPT { return .corrupt(path: path, detail: "SQLite: \(message)") }
        return .sqlite(path: path, code: code & 0xff, message: message, sql: sql)
    }

    /// SQLITE_FULL, or an I/O error whose cause was ENOSPC/EDQUOT (how a full disk shows
    /// up when the write-ahead log or its shared memory cannot grow).
    private func isDiskFull(_ code: Int32) -> Bool {
        if code & 0xff == SQLITE_FULL { return true }
        let cause = sqlite3_system_errno(handle)
        return code & 0xff == SQLITE_IOERR && (cause == ENOSPC || cause == EDQUOT)
    }

    /// Runs one or more statements that return no rows.
    package func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? ""
            sqlite3_free(message)
            if rc & 0xff == SQLITE_NOTADB { throw StoreError.notAnIndex(path: path, detail: "not an SQLite database") }
            if isDiskFull(rc) { throw StoreError.diskFull(path: path) }
            if rc & 0xff == SQLITE_CORRUPT { throw StoreError.corrupt(path: path, detail: "SQLite: \(text)") }
            throw StoreError.sqlite(path: path, code: rc & 0xff, message: text, sql: sql)
        }
    }

    package func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql: sql) }
        return Statement(connection: self, handle: stmt, sql: sql)
    }

    /// Runs `body` in a transaction: committed if it returns, rolled back if it throws.
    /// `immediate` takes the write lock up front (for writers).
    package func transaction<T>(immediate: Bool = true, _ body: () throws -> T) throws -> T {
        try execute(immediate ? "BEGIN IMMEDIATE" : "BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Whether a transaction is open (SQLite is not in autocommit mode).
    package var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    package var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    package var changes: Int { Int(sqlite3_changes(handle)) }

    /// First column of the first row, or nil.
    package func scalarInt(_ sql: String) throws -> Int64? {
        let s = try prepare(sql)
        return try s.step() ? s.int(0) : nil
    }
}

/// A prepared statement. Bind with `bind`, iterate with `step`, reuse with `reset`.
package final class Statement {
    let connection: SQLiteConnection
    let handle: OpaquePointer
    let sql: String

    init(connection: SQLiteConnection, handle: OpaquePointer, sql: String) {
        self.connection = connection
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    @discardableResult
    package func bind(_ values: [SQLValue]) throws -> Statement {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (i, v) in values.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(handle, index)
            case .int(let x): rc = sqlite3_bind_int64(handle, index, x)
            case .double(let x): rc = sqlite3_bind_double(handle, index, x)
            case .text(let s):
                // With its byte length: a text holding U+0000 is stored whole, not cut at the NUL.
                var text = s
                rc = text.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) { chars in
                        // An empty text still needs a non-null pointer (null would bind NULL).
                        chars.count == 0 ? sqlite3_bind_text(handle, index, "", 0, Self.transient)
                            : sqlite3_bind_text64(handle, index, chars.baseAddress, sqlite3_uint64(chars.count), Self.transient, UInt8(SQLITE_UTF8))
                    }
                }
            case .blob(let d):
                rc = d.withUnsafeBytes { raw in
                    sqlite3_bind_blob64(handle, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(raw.count), Self.transient)
                }
            }
            if rc != SQLITE_OK { throw connection.error(rc, sql: sql) }
        }
        return self
    }

    /// Advances to the next row; false when done.
    package func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc, sql: sql)
        }
    }

    /// Runs to completion (for INSERT/UPDATE/DELETE).
    package func run(_ values: [SQLValue] = []) throws {
        try bind(values)
        while try step() {}
        sqlite3_reset(handle)
    }

    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    package func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    package func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    package func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(handle, column) else { return "" }
        let n = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }
    package func blob(_ column: Int32) -> Data {
        let n = Int(sqlite3_column_bytes(handle, column))
        guard n > 0, let p = sqlite3_column_blob(handle, column) else { return Data() }
        return Data(bytes: p, count: n)
    }
    /// Calls `body` with the blob's bytes without copying them (valid only inside).
    package func withBlob<T>(_ column: Int32, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let n = Int(sqlite3_column_bytes(handle, column))
        let p = sqlite3_column_blob(handle, column)
        return try body(UnsafeRawBufferPointer(start: n > 0 ? p : nil, count: n))
    }
}

/// A value bound to a statement parameter.
package enum SQLValue: Sendable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob(Data)
}
