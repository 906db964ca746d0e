import Foundation

/// Where an index file's bytes go, for `m3search info`.
///
/// The vector columns are measured as stored payload (Σ length of the blobs). With SQLite's
/// dbstat table (Debian's libsqlite3 has it) the pages of the other tables and indexes are
/// measured too (`pagedTrees`), and the rest of a table's pages (row headers, text, free
/// space in pages) is attributed to the table's own component, so the components add up to
/// the pages in use.
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
    /// Payload bytes of the HNSW node records and the posting lists (measured only without
    /// dbstat; with it their pages are), and of the codebooks.
    package var hnswBytes: Int64 = 0
    package var postingBytes: Int64 = 0
    package var codebookBytes: Int64 = 0
    /// Bytes in pages (dbstat) of each of `IndexStore.pagedTrees` the file has, empty
    /// without dbstat.
    package var pages: [String: Int64] = [:]
    /// The database file and its write-ahead log on disk.
    package var fileBytes: Int64 = 0
    package var walBytes: Int64 = 0
}

extension IndexStore {
    /// The tables and indexes whose pages `sizes()` measures. Not `chunks`: its vectors are
    /// counted as payload and the rest of its pages is what remains of the file, so walking
    /// it (most of the file, its overflow pages included) would only cost time.
    package static let pagedTrees = ["documents", "sqlite_autoindex_documents_1", "chunks_by_document",
                                     "hnsw_nodes", "graph_image", "postings", "codebooks"]

    /// Measures the file: counts, payload sums per column and, when available, pages per table.
    package func sizes() throws -> StoreSizes {
        var z = StoreSizes()
        (z.documents, z.chunks) = try counts()
        // Only the header of each row is read: `length()` of a blob column does not load the
        // blob (text comes before the blobs, so no overflow page is read for it either).
        let s = try db.prepare("""
            SELECT coalesce(sum(token_count), 0), coalesce(sum(length(dense)), 0), coalesce(sum(length(sparse)), 0),
                   coalesce(sum(length(colbert)), 0), coalesce(sum(length(CAST(text AS BLOB))), 0) FROM chunks
            """)
        if try s.step() {
            (z.tokens, z.denseBytes, z.sparseChunkBytes, z.colbertBytes, z.textBytes) = (s.int(0), s.int(1), s.int(2), s.int(3), s.int(4))
        }
        if try hasTable("codebooks") {
            z.codebookBytes = try db.scalarInt("SELECT coalesce(sum(length(data)), 0) FROM codebooks") ?? 0
        }
        // dbstat is a compile-time option of SQLite; without it the page split is left empty
        // and the graph and postings are measured as payload instead. A `name =` constraint
        // makes dbstat walk that b-tree alone.
        if let stat = try? db.prepare("SELECT coalesce(sum(pgsize), 0), count(*) FROM dbstat WHERE name = ?") {
            for name in Self.pagedTrees {
                try stat.bind([.text(name)])
                if try stat.step(), stat.int(1) > 0 { z.pages[name] = stat.int(0) }
            }
        } else {
            z.hnswBytes = try db.scalarInt("SELECT coalesce(sum(length(record)), 0) FROM hnsw_nodes") ?? 0
            z.postingBytes = try db.scalarInt("SELECT coalesce(sum(length(data)), 0) FROM postings") ?? 0
        }
        let fm = FileManager.default
        z.fileBytes = ((try? fm.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? 0
        z.walBytes = ((try? fm.attributesOfItem(atPath: path + "-wal")[.size]) as? NSNumber)?.int64Value ?? 0
        return z
    }
}
