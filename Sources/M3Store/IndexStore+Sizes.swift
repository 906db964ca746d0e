import Foundation

/// Where an index file's bytes go, for `m3search info`.
///
/// The vector columns are measured as stored payload (Σ length of the blobs). With SQLite's
/// dbstat table (Debian's libsqlite3 has it) each table's pages are measured too, and the
/// rest of a table's pages (row headers, text, free space in pages) is attributed to the
/// table's own component, so the components add up to the pages in use.
package struct StoreSizes: Sendable, Equatable, Codable {
    package var documents = 0
    package var chunks = 0
    /// Σ token_count over chunks (tokens the encoder saw per chunk).
    package var tokens: Int64 = 0
    /// Payload bytes: Σ length of the chunks' dense, sparse, ColBERT blobs and texts (UTF-8).
    package var denseBytes: Int64 = 0
    package var sparseChunkBytes: Int64 = 0
    package var colbertBytes: Int64 = 0
    package var textBytes: Int64 = 0
    /// Payload bytes of the HNSW node records, the posting lists and the codebooks.
    package var hnswBytes: Int64 = 0
    package var postingBytes: Int64 = 0
    package var codebookBytes: Int64 = 0
    /// Bytes of each table and index in pages (dbstat), empty without dbstat.
    package var pages: [String: Int64] = [:]
    /// The database file and its write-ahead log on disk.
    package var fileBytes: Int64 = 0
    package var walBytes: Int64 = 0
}

extension IndexStore {
    /// Measures the file: counts, payload sums per column and, when available, pages per table.
    package func sizes() throws -> StoreSizes {
        var z = StoreSizes()
        (z.documents, z.chunks) = try counts()
        let s = try db.prepare("""
            SELECT coalesce(sum(token_count), 0), coalesce(sum(length(dense)), 0), coalesce(sum(length(sparse)), 0),
                   coalesce(sum(length(colbert)), 0), coalesce(sum(length(CAST(text AS BLOB))), 0) FROM chunks
            """)
        if try s.step() {
            (z.tokens, z.denseBytes, z.sparseChunkBytes, z.colbertBytes, z.textBytes) = (s.int(0), s.int(1), s.int(2), s.int(3), s.int(4))
        }
        z.hnswBytes = try db.scalarInt("SELECT coalesce(sum(length(record)), 0) FROM hnsw_nodes") ?? 0
        z.postingBytes = try db.scalarInt("SELECT coalesce(sum(length(data)), 0) FROM postings") ?? 0
        if try hasTable("codebooks") {
            z.codebookBytes = try db.scalarInt("SELECT coalesce(sum(length(data)), 0) FROM codebooks") ?? 0
        }
        // dbstat is a compile-time option of SQLite; without it the page split is left empty.
        if let stat = try? db.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name") {
            while try stat.step() { z.pages[stat.text(0)] = stat.int(1) }
        }
        let fm = FileManager.default
        z.fileBytes = ((try? fm.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? 0
        z.walBytes = ((try? fm.attributesOfItem(atPath: path + "-wal")[.size]) as? NSNumber)?.int64Value ?? 0
        return z
    }
}
