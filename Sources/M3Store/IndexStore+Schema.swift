import CSQLite
import Foundation

/// The schema an index file may hold, checked before anything else reads the file.
///
/// An index is untrusted input: SQLite runs whatever the file's schema says, so a trigger
/// planted there would fire on m3search's own writes and a view named `chunks` would feed
/// searches its text (issue 16, item 6). Connections are hardened (`m3_sqlite_harden`:
/// defensive mode, untrusted schema, triggers and views disabled), and on open the file's
/// `sqlite_master` must list exactly the objects m3search's migrations create for the
/// file's format version: the expected list is made by running those migrations on an
/// in-memory database, so it can never drift from them.
extension IndexStore {
    /// One row of `sqlite_master`.
    struct SchemaObject: Hashable, Comparable {
        var type: String
        var name: String
        var table: String
        var sql: String?

        static func < (a: Self, b: Self) -> Bool { (a.type, a.name) < (b.type, b.name) }
        var label: String { type == "table" || type == "view" ? "\(type) \(name)" : "\(type) \(name) on \(table)" }
    }

    /// What `verifySchema` found: objects m3search did not create (or created otherwise),
    /// and which of them `removeForeignSchemaObjects` can drop without losing an own one.
    package struct SchemaReport: Sendable {
        /// Human-readable ("trigger wipe on chunks", "view chunks"), sorted.
        package var foreign: [String] = []
        /// Own objects missing, or present with another definition or type: not repairable.
        package var damaged: [String] = []
        package var isSound: Bool { foreign.isEmpty && damaged.isEmpty }
    }

    private static let expectedLock = NSLock()
    nonisolated(unsafe) private static var expectedByVersion: [Int: Set<SchemaObject>] = [:]

    /// The objects the migrations up to `version` create, from an in-memory database.
    static func expectedSchema(formatVersion version: Int) throws -> Set<SchemaObject> {
        expectedLock.lock()
        defer { expectedLock.unlock() }
        if let cached = expectedByVersion[version] { return cached }
        let memory = try SQLiteConnection(path: ":memory:", mode: .create)
        for m in migrations where m.version <= version { try memory.execute(m.sql) }
        let objects = try schema(of: memory)
        expectedByVersion[version] = objects
        return objects
    }

    static func schema(of db: SQLiteConnection) throws -> Set<SchemaObject> {
        let s = try db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master")
        var objects = Set<SchemaObject>()
        while try s.step() {
            objects.insert(SchemaObject(type: s.text(0), name: s.text(1), table: s.text(2), sql: s.isNull(3) ? nil : s.text(3)))
        }
        return objects
    }

    /// Objects a file may hold or not, in any format version: tables m3search creates when
    /// missing, without a format change (the row checksums).
    static func optionalSchema() throws -> Set<SchemaObject> {
        expectedLock.lock()
        defer { expectedLock.unlock() }
        if let cached = expectedByVersion[-1] { return cached }
        let memory = try SQLiteConnection(path: ":memory:", mode: .create)
        try memory.execute(checksumTableSQL)
        let objects = try schema(of: memory)
        expectedByVersion[-1] = objects
        return objects
    }

    /// Compares the file's schema with the one of its format version.
    static func schemaReport(_ db: SQLiteConnection, formatVersion version: Int) throws -> SchemaReport {
        let found = try schema(of: db)
        // The optional objects count as expected when present, and are not missed when absent.
        let optional = try optionalSchema()
        let expected = try expectedSchema(formatVersion: version).union(optional.intersection(found))
        let ownNames = Set(expected.map(\.name))
        var report = SchemaReport()
        for object in found.subtracting(expected).sorted() {
            if ownNames.contains(object.name) {
                report.damaged.append("\(object.label) is not the one m3search creates")
            } else {
                report.foreign.append(object.label)
            }
        }
        let foundNames = Set(found.map(\.name))
        for object in expected.sorted() where !foundNames.contains(object.name) {
            report.damaged.append("\(object.label) is missing")
        }
        return report
    }

    /// Throws `StoreError.corrupt` naming every object m3search did not create.
    func verifySchema(formatVersion version: Int) throws {
        let report = try Self.schemaReport(db, formatVersion: version)
        guard !report.isSound else { return }
        var parts: [String] = []
        if !report.foreign.isEmpty {
            parts.append("its schema holds objects m3search did not create (\(report.foreign.prefix(10).joined(separator: ", ")))"
                + "; an index file is untrusted input, so it is refused: `m3search check --repair` removes them")
        }
        if !report.damaged.isEmpty { parts.append(report.damaged.prefix(10).joined(separator: ", ")) }
        throw StoreError.corrupt(path: path, detail: parts.joined(separator: "; "))
    }

    /// The schema of the index at `path` against its format version, without opening it as
    /// an index (so `check` can report what a normal open refuses). Throws like `init` for a
    /// file that is not an index at all.
    package static func inspectSchema(path: String) throws -> SchemaReport {
        try withRawConnection(path: path, writable: false) { db, version in try schemaReport(db, formatVersion: version) }
    }

    /// Drops every schema object m3search did not create (triggers, views, indexes and
    /// tables with names of their own), in one transaction; returns what it dropped. Own
    /// objects that are missing or altered stay reported: only a rebuild restores those.
    package static func removeForeignSchemaObjects(path: String) throws -> [String] {
        try withRawConnection(path: path, writable: true) { db, version in
            let found = try schema(of: db)
            let expected = try expectedSchema(formatVersion: version).union(try optionalSchema().intersection(found))
            let ownNames = Set(expected.map(\.name))
            let order = ["trigger": 0, "view": 1, "index": 2, "table": 3]
            let foreign = found.subtracting(expected)
                .filter { !ownNames.contains($0.name) && !$0.name.hasPrefix("sqlite_autoindex_") && order[$0.type] != nil }
                .sorted { (order[$0.type]!, $0.name) < (order[$1.type]!, $1.name) }
            guard !foreign.isEmpty else { return [] }
            try db.transaction {
                for object in foreign {
                    let quoted = "\"" + object.name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                    try db.execute("DROP \(object.type.uppercased()) IF EXISTS \(quoted)")
                }
            }
            return foreign.map(\.label)
        }
    }

    /// A hardened connection to an existing index, with its format version read from a
    /// verified `m3_meta` table.
    private static func withRawConnection<T>(path: String, writable: Bool, _ body: (SQLiteConnection, Int) throws -> T) throws -> T {
        try requireRegularFile(path)
        // Read-only as an index opens read-only (immutable on read-only media, see `connect`).
        let db = try connect(path: path, readOnly: !writable, create: false)
        return try db.withTimeLimit(seconds: openTimeLimit) {
            let version = try readFormatVersion(of: db, path: path)
            return try body(db, version)
        }
    }

    /// The time any statement may run while an index is opened and verified.
    static let openTimeLimit: Double = 10

    /// Reads magic and format version, after checking that `m3_meta` is m3search's table
    /// (not a view, not another table of that name) so the read itself runs nothing foreign.
    static func readFormatVersion(of db: SQLiteConnection, path: String) throws -> Int {
        let found = try schema(of: db)
        if found.isEmpty { throw StoreError.missing(path: path) }
        let meta = try expectedSchema(formatVersion: 1).filter { $0.name == "m3_meta" || $0.table == "m3_meta" }
        guard found.contains(where: { $0.name == "m3_meta" }) else {
            let names = found.filter { $0.type == "table" }.map(\.name).sorted()
            throw StoreError.notAnIndex(path: path, detail: "SQLite database without m3search tables: \(names.prefix(5).joined(separator: ", "))")
        }
        guard meta.isSubset(of: found) else {
            throw StoreError.corrupt(path: path, detail: "its m3_meta table is not the one m3search creates")
        }
        func value(_ key: String) throws -> String? {
            let s = try db.prepare("SELECT value FROM m3_meta WHERE key = ?")
            try s.bind([.text(key)])
            return try s.step() ? s.text(0) : nil
        }
        guard try value(MetaKey.magic) == magic else { throw StoreError.notAnIndex(path: path, detail: "missing m3search magic") }
        guard let text = try value(MetaKey.formatVersion), let version = Int(text), version >= 1 else {
            throw StoreError.corrupt(path: path, detail: "its meta row \(MetaKey.formatVersion) is missing or not a number")
        }
        if version > formatVersion { throw StoreError.newerFormat(path: path, found: version, supported: formatVersion) }
        return version
    }

    /// m3search opens only regular files (or links to them): a directory gets a clear
    /// error, and a FIFO or device is never opened (opening a FIFO blocks until a writer
    /// comes; a device can be endless).
    package static func requireRegularFile(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { throw StoreError.missing(path: path) }
            throw StoreError.sqlite(path: path, code: SQLITE_CANTOPEN, message: String(cString: strerror(errno)), sql: nil)
        }
        let kind: String
        switch info.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR: kind = "a directory"
        case S_IFIFO: kind = "a FIFO"
        case S_IFCHR: kind = "a character device"
        case S_IFBLK: kind = "a block device"
        case S_IFSOCK: kind = "a socket"
        default: kind = "not a regular file"
        }
        throw StoreError.notAnIndex(path: path, detail: "it is \(kind); an index is a regular file")
    }
}
