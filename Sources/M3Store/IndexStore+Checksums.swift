import CChecksums
import Foundation

/// Per-row checksums of the chunks (issue 16, item 5): damage that still decodes — a
/// flipped sign of an int8 dense scale, rewritten PQ codes, a letter changed in a text — is
/// a valid value to every decoder, and SQLite does not checksum pages. Each chunk gets three
/// XXH3-64 digests, kept in their own table (`chunk_checksums`, created when missing, so no
/// format version changes and older files stay readable):
///
/// - `dense`: the dense blob (verified where the graph is loaded);
/// - `colbert`: the ColBERT blob (verified where a search rescores);
/// - `row`: document id, ordinal, character range, token count, the sparse blob and the
///   text (verified, with the other two, by `check` and `export`).
///
/// A mismatch is `StoreError.corrupt` naming the chunk: an index with a damaged row is
/// refused (reads) or reported (`check`); the cure is to rebuild it, or to delete and re-add
/// that document. Rows without checksums (a file written before they existed, opened
/// read-only) are "not yet checked"; the first writable open computes them.
///
/// XXH3 is not a cryptographic hash: it detects damage, not an attacker, who can rewrite
/// the checksums as easily as the rows.
extension IndexStore {
    static let checksumTable = "chunk_checksums"
    static let checksumTableSQL = """
        CREATE TABLE chunk_checksums (chunk_id INTEGER PRIMARY KEY, dense INTEGER NOT NULL, colbert INTEGER NOT NULL, row INTEGER NOT NULL)
        """

    /// The three digests of one chunk, as stored (XXH3-64 bit patterns).
    package struct ChunkChecksums: Equatable, Sendable {
        package var dense: Int64
        package var colbert: Int64
        package var row: Int64
    }

    static func digest(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> Int64 {
        Int64(bitPattern: XXH3_64bits_withSeed(bytes.baseAddress, bytes.count, seed))
    }

    static func rowDigest(documentID: Int64, ordinal: Int64, charStart: Int64, charEnd: Int64, tokenCount: Int64,
                          sparse: UnsafeRawBufferPointer, text: String) -> Int64 {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(40 + sparse.count + text.utf8.count)
        for v in [documentID, ordinal, charStart, charEnd, tokenCount] { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        bytes += sparse
        bytes += text.utf8
        return bytes.withUnsafeBytes { digest($0, seed: 3) }
    }

    static func checksums(documentID: Int64, ordinal: Int64, charStart: Int64, charEnd: Int64, tokenCount: Int64,
                          text: String, dense: UnsafeRawBufferPointer, sparse: UnsafeRawBufferPointer,
                          colbert: UnsafeRawBufferPointer) -> ChunkChecksums {
        ChunkChecksums(dense: digest(dense, seed: 1), colbert: digest(colbert, seed: 2),
                       row: rowDigest(documentID: documentID, ordinal: ordinal, charStart: charStart, charEnd: charEnd,
                                      tokenCount: tokenCount, sparse: sparse, text: text))
    }

    /// Whether the file has the checksum table (a read-only file from before may not).
    func hasChecksums() throws -> Bool { try hasTable(Self.checksumTable) }

    /// Creates the checksum table when missing and computes the digests of every chunk that
    /// has none (an index written before checksums existed), in one write transaction taken
    /// only when there is something to do.
    func ensureChecksums() throws {
        if try hasChecksums(), try db.scalarInt("""
            SELECT count(*) FROM (SELECT 1 FROM chunks c LEFT JOIN chunk_checksums k ON k.chunk_id = c.id WHERE k.chunk_id IS NULL LIMIT 1)
            """) == 0 { return }
        try db.transaction {
            if !(try hasChecksums()) { try db.execute(Self.checksumTableSQL) }
            let s = try db.prepare("""
                SELECT c.id, c.document_id, c.ordinal, c.char_start, c.char_end, c.token_count, c.text, c.dense, c.sparse, c.colbert
                FROM chunks c LEFT JOIN chunk_checksums k ON k.chunk_id = c.id WHERE k.chunk_id IS NULL
                """)
            let put = try db.prepare("INSERT OR REPLACE INTO chunk_checksums(chunk_id, dense, colbert, row) VALUES(?, ?, ?, ?)")
            while try s.step() {
                let sums = s.withBlob(7) { dense in s.withBlob(8) { sparse in s.withBlob(9) { colbert in
                    Self.checksums(documentID: s.int(1), ordinal: s.int(2), charStart: s.int(3), charEnd: s.int(4), tokenCount: s.int(5),
                                   text: s.text(6), dense: dense, sparse: sparse, colbert: colbert)
                } } }
                try put.run([.int(s.int(0)), .int(sums.dense), .int(sums.colbert), .int(sums.row)])
            }
        }
    }

    /// Records the digests of a chunk just written.
    func putChecksums(chunkID: Int64, _ sums: ChunkChecksums) throws {
        try db.prepare("INSERT OR REPLACE INTO chunk_checksums(chunk_id, dense, colbert, row) VALUES(?, ?, ?, ?)")
            .run([.int(chunkID), .int(sums.dense), .int(sums.colbert), .int(sums.row)])
    }

    /// `StoreError.corrupt` for a chunk whose `what` fails its checksum.
    func checksumMismatch(_ chunkID: Int64, _ what: String) -> StoreError {
        .corrupt(path: path, detail: "chunk \(chunkID): the stored \(what) fails its checksum (damaged after it was written)")
    }
}
