import Foundation

extension IndexStore {
    // MARK: - Filters

    /// The documents (id, path) whose mtime lies in [`modifiedAfter`, `modifiedBefore`) and
    /// whose metadata JSON object holds every given key with the given value: a string equal
    /// to it, or a number or boolean whose JSON text equals it. Metadata that is not valid
    /// JSON matches no pair (the file is untrusted: `json_each` is only reached through
    /// `CASE`, which SQLite evaluates lazily, so a damaged value cannot fail the query).
    package func documents(modifiedAfter: Double?, modifiedBefore: Double?,
                           metadata: [(key: String, value: String)]) throws -> [(id: Int64, path: String)] {
        var conditions: [String] = []
        var values: [SQLValue] = []
        if let modifiedAfter {
            conditions.append("mtime >= ?")
            values.append(.double(modifiedAfter))
        }
        if let modifiedBefore {
            conditions.append("mtime < ?")
            values.append(.double(modifiedBefore))
        }
        for (key, value) in metadata {
            conditions.append("""
                CASE WHEN json_valid(documents.metadata) THEN EXISTS (
                    SELECT 1 FROM json_each(documents.metadata) AS j WHERE j.key = ? AND (
                        (j.type = 'text' AND j.value = ?) OR (j.type IN ('integer', 'real') AND CAST(j.value AS TEXT) = ?)
                        OR (j.type = 'true' AND ? = 'true') OR (j.type = 'false' AND ? = 'false')))
                ELSE 0 END
                """)
            values += [.text(key)] + Array(repeating: .text(value), count: 4)
        }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.map { "(\($0))" }.joined(separator: " AND ")
        let s = try db.prepare("SELECT id, path FROM documents\(whereClause) ORDER BY id")
        try s.bind(values)
        var out: [(id: Int64, path: String)] = []
        while try s.step() { out.append((s.int(0), s.text(1))) }
        return out
    }

    /// The ids of every chunk of the given documents, ascending (one statement whatever
    /// their number: the ids travel as one JSON array).
    package func chunkIDs(documentIDs: [Int64]) throws -> [Int64] {
        guard !documentIDs.isEmpty else { return [] }
        let list = "[" + documentIDs.map(String.init).joined(separator: ",") + "]"
        let s = try db.prepare("SELECT id FROM chunks WHERE document_id IN (SELECT value FROM json_each(?)) ORDER BY id")
        try s.bind([.text(list)])
        var out: [Int64] = []
        while try s.step() { out.append(s.int(0)) }
        return out
    }
}
