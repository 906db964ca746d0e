import CChecksums
import CSQLite
import Foundation

/// The graph image's parts (format 4, table `graph_image`): numbered blobs M3Index writes
/// and reads (layout in `Sources/M3Index/HNSWIndex+Image.swift`): part 0 the manifest,
/// parts 2k + 1 and 2k + 2 the links and rows of segment k. Each part carries an XXH3-64
/// checksum (seed 4) of its bytes, computed here on write and verified on every read, so
/// a damaged part is found before it is decoded.
extension IndexStore {
    private static let graphImageSeed: UInt64 = 4

    /// Whether the file has the table (a format-3 file opened read-only has not).
    package func hasGraphImageTable() throws -> Bool { try hasTable("graph_image") }

    /// The checksum of every stored part, by part number.
    package func graphImageChecksums() throws -> [Int: Int64] {
        guard try hasGraphImageTable() else { return [:] }
        let s = try db.prepare("SELECT part, checksum FROM graph_image")
        var out: [Int: Int64] = [:]
        while try s.step() { out[Int(s.int(0))] = s.int(1) }
        return out
    }

    /// Bytes of all parts numbered `from` or more (their lengths, not their contents).
    package func graphImageBytes(from part: Int) throws -> Int {
        guard try hasGraphImageTable() else { return 0 }
        let s = try db.prepare("SELECT coalesce(sum(length(data)), 0) FROM graph_image WHERE part >= ?")
        try s.bind([.int(Int64(part))])
        return try s.step() ? Int(s.int(0)) : 0
    }

    /// Calls `body` with the bytes of `part` (borrowed, valid only inside) once they match
    /// their checksum; nil when the part is not stored. Throws `StoreError.corrupt` when
    /// they do not match.
    package func withGraphImagePart<T>(_ part: Int, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        guard try hasGraphImageTable() else { return nil }
        let s = try db.prepare("SELECT checksum, data FROM graph_image WHERE part = ?")
        try s.bind([.int(Int64(part))])
        guard try s.step() else { return nil }
        let stored = s.int(0)
        return try s.withBlob(1) { bytes in
            guard Self.digest(bytes, seed: Self.graphImageSeed) == stored else {
                throw StoreError.corrupt(path: path, detail: "graph image part \(part) fails its checksum")
            }
            return try body(bytes)
        }
    }

    /// Bytes of a part read and hashed at a time (well inside L2).
    static let graphImageReadPiece = 256 << 10

    /// Reads `part` straight into `destination` (SQLite's incremental blob I/O: no copy of
    /// the whole blob in between) and checks it against its checksum. Returns false when the
    /// part is not stored; throws `StoreError.corrupt` when its size is not
    /// `destination.count` or its bytes fail the checksum.
    package func readGraphImagePart(_ part: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Bool {
        try readGraphImagePart(part, bytes: destination.count, piece: Self.graphImageReadPiece,
                               at: { offset in destination.baseAddress! + offset }, then: { _ in })
    }

    /// Reads `part` in consecutive pieces of at most `buffer.count` bytes: `body` gets each
    /// (in `buffer`, valid only inside) in order, and the checksum, computed as they pass,
    /// is checked after the last. So the caller works on bytes while they are in cache, and
    /// trusts what it made of them only once this returns true. False when the part is not
    /// stored; throws `StoreError.corrupt` when it does not hold exactly `bytes` bytes or
    /// fails its checksum.
    package func readGraphImagePart(_ part: Int, bytes expected: Int, pieces buffer: UnsafeMutableRawBufferPointer,
                                    _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        try readGraphImagePart(part, bytes: expected, piece: buffer.count, at: { _ in buffer.baseAddress! }, then: body)
    }

    /// The two above: each piece of at most `piece` bytes is read to `at(offset)`, hashed
    /// right after it is read, while it is still in cache (hashing the whole part after
    /// reading it was a second pass over memory), and handed to `then`.
    private func readGraphImagePart(_ part: Int, bytes expected: Int, piece: Int, at destination: (Int) -> UnsafeMutableRawPointer,
                                    then body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard try hasGraphImageTable() else { return false }
        let s = try db.prepare("SELECT checksum FROM graph_image WHERE part = ?")
        try s.bind([.int(Int64(part))])
        guard try s.step() else { return false }
        let stored = s.int(0)
        var blob: OpaquePointer?
        let rc = sqlite3_blob_open(db.handle, "main", "graph_image", "data", Int64(part), 0, &blob)
        defer { sqlite3_blob_close(blob) }
        guard rc == SQLITE_OK, let blob else { throw db.error(rc) }
        let size = Int(sqlite3_blob_bytes(blob))
        guard size == expected else {
            throw StoreError.corrupt(path: path, detail: "graph image part \(part) has \(size) bytes, its segment needs \(expected)")
        }
        guard let state = XXH3_createState() else {
            throw StoreError.sqlite(path: path, code: SQLITE_NOMEM, message: "cannot allocate a hash state", sql: nil)
        }
        defer { XXH3_freeState(state) }
        XXH3_64bits_reset_withSeed(state, Self.graphImageSeed)
        var offset = 0
        while offset < size {
            let n = Swift.min(Swift.max(1, piece), size - offset)
            let bytes = destination(offset)
            let read = sqlite3_blob_read(blob, bytes, Int32(n), Int32(offset))
            guard read == SQLITE_OK else { throw db.error(read) }
            XXH3_64bits_update(state, bytes, n)
            try body(UnsafeRawBufferPointer(start: bytes, count: n))
            offset += n
        }
        guard Int64(bitPattern: XXH3_64bits_digest(state)) == stored else {
            throw StoreError.corrupt(path: path, detail: "graph image part \(part) fails its checksum")
        }
        return true
    }

    /// The most of the file SQLite may map in `withMappedReads`. SQLite clamps it to its
    /// compile-time SQLITE_MAX_MMAP_SIZE (2 GB − 64 KB in the default build and Debian's),
    /// so in a larger file only the pages in its first 2 GB are mapped; the rest are still
    /// read with one pread each.
    static let mappedReadLimit: Int64 = 1 << 40

    /// Runs `body` with SQLite reading this file's pages through a memory map instead of one
    /// pread per 4 KB page: the image of a 100k-chunk index is 30k pages, and the incremental
    /// blob reads of its parts use the map too (strace of reading every part: 30,192 preads
    /// without, 7 with). Call with no statement open, and let `body` finish its own: the map
    /// is dropped before this returns (`mmap_size` back to 0), which SQLite does only while
    /// no mapped page is in use.
    ///
    /// Only for a bounded bulk read, not for the connection's life: with the file mapped, an
    /// I/O error on it, or another program truncating it (SQLite's own writers never cut
    /// below a snapshot a reader holds), raises SIGBUS instead of an error SQLite could
    /// return, so a server's open maps the file one graph image segment at a time, never
    /// while it serves.
    package func withMappedReads<T>(_ body: () throws -> T) throws -> T {
        try db.execute("PRAGMA main.mmap_size=\(Self.mappedReadLimit)")
        // A failing reset leaves only the map (the pages read are right either way); the
        // connection's close drops it.
        defer { try? db.execute("PRAGMA main.mmap_size=0") }
        return try body()
    }

    /// The parts whose bytes fail their checksum, by part number (`check`: a damaged part
    /// of a stale image is never read by an open, but it is damage all the same).
    package func graphImageDamagedParts() throws -> [Int] {
        guard try hasGraphImageTable() else { return [] }
        let s = try db.prepare("SELECT part, checksum, data FROM graph_image ORDER BY part")
        var damaged: [Int] = []
        while try s.step() {
            let part = Int(s.int(0)), stored = s.int(1)
            let ok = try s.withBlob(2) { Self.digest($0, seed: Self.graphImageSeed) == stored }
            if !ok { damaged.append(part) }
        }
        return damaged
    }

    /// Whether `known` (`graphImageChecksums()`) says `part` is stored with these bytes.
    package func graphImagePartIsStored(_ part: Int, _ bytes: [UInt8], known: [Int: Int64]) -> Bool {
        known[part] == bytes.withUnsafeBytes { Self.digest($0, seed: Self.graphImageSeed) }
    }

    /// Stores `part` unless the stored one has the same checksum (an unchanged segment is
    /// not rewritten); returns whether it wrote. Call inside `write`.
    @discardableResult
    package func putGraphImagePart(_ part: Int, _ bytes: [UInt8], known: [Int: Int64]) throws -> Bool {
        let sum = bytes.withUnsafeBytes { Self.digest($0, seed: Self.graphImageSeed) }
        if known[part] == sum { return false }
        try db.prepare("INSERT INTO graph_image(part, checksum, data) VALUES(?, ?, ?) "
                       + "ON CONFLICT(part) DO UPDATE SET checksum = excluded.checksum, data = excluded.data")
            .run([.int(Int64(part)), .int(sum), .blob(Data(bytes))])
        return true
    }

    /// Deletes the parts numbered `from` or more.
    package func deleteGraphImageParts(from part: Int) throws {
        guard try hasGraphImageTable() else { return }
        try db.prepare("DELETE FROM graph_image WHERE part >= ?").run([.int(Int64(part))])
    }
}
