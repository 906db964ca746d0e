import Foundation
@testable import M3Store
import XCTest

final class IndexStoreTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testCreateReopenAndSettings() throws {
        let path = dir.appendingPathComponent("a.m3index").path
        let settings = StoredSettings(modelID: "abc", dimension: 8)
        do {
            let store = try IndexStore(path: path, createWith: settings)
            let id = try store.insertDocument(path: "x.txt", size: 3, mtime: 1, contentHash: "h", metadata: nil)
            _ = try store.insertChunk(documentID: id, ordinal: 0, charStart: 0, charEnd: 3, tokenCount: 3, text: "abc",
                                      dense: Data([1]), sparse: Data(), colbert: Data())
        }
        let store = try IndexStore(path: path)
        XCTAssertEqual(try store.settings(), settings)
        XCTAssertEqual(try store.counts().documents, 1)
        XCTAssertEqual(try store.counts().chunks, 1)
        XCTAssertEqual(try store.integrityCheck(), ["ok"])
    }

    func testForeignFilesAreRefused() throws {
        let text = dir.appendingPathComponent("notes.txt").path
        try Data("hello, not a database".utf8).write(to: URL(fileURLWithPath: text))
        XCTAssertThrowsError(try IndexStore(path: text)) { error in
            guard case StoreError.notAnIndex = error else { return XCTFail("\(error)") }
        }
        let other = dir.appendingPathComponent("other.sqlite").path
        do {
            let db = try SQLiteConnection(path: other, mode: .create)
            try db.execute("CREATE TABLE t(x)")
        }
        XCTAssertThrowsError(try IndexStore(path: other, createWith: StoredSettings(modelID: "m", dimension: 4))) { error in
            guard case StoreError.notAnIndex = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try IndexStore(path: dir.appendingPathComponent("missing.m3index").path)) { error in
            guard case StoreError.missing = error else { return XCTFail("\(error)") }
        }
    }

    func testNewerFormatIsRefused() throws {
        let path = dir.appendingPathComponent("b.m3index").path
        do {
            let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 4))
            try store.setMeta("format_version", "99")
        }
        XCTAssertThrowsError(try IndexStore(path: path)) { error in
            guard case StoreError.newerFormat(_, 99, _) = error else { return XCTFail("\(error)") }
        }
    }

    func testDeletingADocumentRemovesItsChunks() throws {
        let store = try IndexStore(path: dir.appendingPathComponent("c.m3index").path,
                                   createWith: StoredSettings(modelID: "m", dimension: 4))
        let id = try store.insertDocument(path: "d", size: 1, mtime: 0, contentHash: "h", metadata: "{\"k\":1}")
        for i in 0..<3 {
            _ = try store.insertChunk(documentID: id, ordinal: i, charStart: i, charEnd: i + 1, tokenCount: 1, text: "t",
                                      dense: Data(), sparse: Data(), colbert: Data())
        }
        XCTAssertEqual(try store.deleteDocument(id: id).count, 3)
        XCTAssertEqual(try store.counts().chunks, 0)
    }

    /// Graph image parts read inside `withMappedReads` (SQLite's memory map) are the bytes
    /// written, and `mmap_size` is 0 again afterwards, also when the body throws.
    func testMappedReadsReadThePartsAndDropTheMap() throws {
        struct Stop: Error {}
        let path = dir.appendingPathComponent("m.m3index").path
        let links = (0 ..< 300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }  // 73 pages
        let rows = (0 ..< 600_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 11) }  // read in 3 pieces
        do {
            let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 4))
            try store.write {
                try store.putGraphImagePart(1, links, known: [:])
                try store.putGraphImagePart(2, rows, known: [:])
            }
        }
        let store = try IndexStore(path: path, readOnly: true)
        func mmapSize() throws -> Int64 { try store.db.scalarInt("PRAGMA mmap_size") ?? -1 }
        XCTAssertEqual(try mmapSize(), 0)
        try store.read {
            let (readLinks, readRows) = try store.withMappedReads {
                XCTAssertGreaterThan(try mmapSize(), 0)
                let l = try store.withGraphImagePart(1) { Array($0) }
                var r = [UInt8](repeating: 0, count: rows.count)
                let found = try r.withUnsafeMutableBytes { try store.readGraphImagePart(2, into: $0) }
                XCTAssertTrue(found)
                return (l, r)
            }
            XCTAssertEqual(readLinks, links)
            XCTAssertEqual(readRows, rows)
            XCTAssertEqual(try mmapSize(), 0)
            XCTAssertThrowsError(try store.withMappedReads { throw Stop() })
            XCTAssertEqual(try mmapSize(), 0)
        }
        // One byte changed in the last piece: the part fails its checksum.
        do {
            let writer = try IndexStore(path: path)
            try writer.write {
                try writer.db.execute("UPDATE graph_image SET data = CAST(substr(data, 1, 599999) || x'00' AS BLOB) WHERE part = 2")
            }
        }
        var r = [UInt8](repeating: 0, count: rows.count)
        XCTAssertThrowsError(try store.withMappedReads { try r.withUnsafeMutableBytes { try store.readGraphImagePart(2, into: $0) } }) { error in
            guard case StoreError.corrupt(_, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("fails its checksum"), detail)
        }
    }

    /// `write { }` commits when its body returns and rolls back when it throws; `read { }`
    /// sees one committed state, whatever another connection commits meanwhile.
    func testScopedTransactions() throws {
        let path = dir.appendingPathComponent("t.m3index").path
        let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 4))
        struct Stop: Error {}
        XCTAssertThrowsError(try store.write {
            _ = try store.insertDocument(path: "rolled back", size: 1, mtime: 0, contentHash: "h", metadata: nil)
            throw Stop()
        })
        XCTAssertNil(try store.document(path: "rolled back"))
        let id = try store.write { try store.insertDocument(path: "kept", size: 1, mtime: 0, contentHash: "h", metadata: nil) }
        XCTAssertEqual(try store.document(path: "kept")?.id, id)

        let reader = try IndexStore(path: path, readOnly: true)
        let other = try IndexStore(path: path)
        let seen = try reader.read { () -> [Int] in
            let before = try reader.counts().documents
            _ = try other.write { try other.insertDocument(path: "meanwhile", size: 1, mtime: 0, contentHash: "h", metadata: nil) }
            return [before, try reader.counts().documents]
        }
        XCTAssertEqual(seen, [1, 1], "a read transaction keeps its snapshot")
        XCTAssertEqual(try reader.counts().documents, 2)
        let version = try reader.dataVersion()
        _ = try other.write { try other.insertDocument(path: "later", size: 1, mtime: 0, contentHash: "h", metadata: nil) }
        XCTAssertNotEqual(try reader.dataVersion(), version, "another connection's commit changes the data version")
    }

    /// Named reads return what named writes stored: scoring rows by id (with or without the
    /// ColBERT blob), texts by id, HNSW records and header, postings, codebooks, saved weights.
    func testNamedReadsReturnWhatWasWritten() throws {
        let store = try IndexStore(path: dir.appendingPathComponent("n.m3index").path,
                                   createWith: StoredSettings(modelID: "m", dimension: 4))
        XCTAssertNil(try store.hnswHeader(), "an empty index has no graph yet")
        let doc = try store.insertDocument(path: "d", size: 1, mtime: 0, contentHash: "h", metadata: nil)
        var ids: [Int64] = []
        for i in 0..<3 {
            ids.append(try store.insertChunk(documentID: doc, ordinal: i, charStart: 10 * i, charEnd: 10 * i + 5, tokenCount: 4,
                                             text: "text \(i)", dense: Data([UInt8(i)]), sparse: Data(), colbert: Data([1, 2, UInt8(i)])))
        }
        var rows: [Int64: (ChunkPosition, Data)] = [:]
        try store.chunkScoringRows(ids: [ids[2], ids[0], 999], colbert: true) { position, blob in rows[position.id] = (position, Data(blob)) }
        XCTAssertEqual(Set(rows.keys), [ids[0], ids[2]])
        XCTAssertEqual(rows[ids[2]]?.0, ChunkPosition(id: ids[2], documentID: doc, ordinal: 2, charStart: 20, charEnd: 25))
        XCTAssertEqual(rows[ids[2]]?.1, Data([1, 2, 2]))
        try store.chunkScoringRows(ids: ids, colbert: false) { _, blob in XCTAssertEqual(blob.count, 0) }
        XCTAssertEqual(try store.chunkTexts(ids: [ids[1], 999]), [ids[1]: "text 1"])
        XCTAssertEqual(try store.chunkIDs(), ids)

        // Chunks without a graph header: the header row was lost (issue 16, item 4).
        XCTAssertThrowsError(try store.hnswHeader()) { error in
            guard case StoreError.corrupt(_, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("hnsw_header is missing"), detail)
        }
        try store.putHNSW(header: [9, 8, 7], nodes: [(slot: 1, record: [1, 1]), (slot: 0, record: [0])])
        XCTAssertEqual(try store.hnswHeader(), [9, 8, 7])
        var nodes: [(Int, [UInt8])] = []
        try store.forEachHNSWNode { slot, record in nodes.append((slot, Array(record))) }
        XCTAssertEqual(nodes.map(\.0), [0, 1])
        XCTAssertEqual(nodes.map(\.1), [[0], [1, 1]])

        try store.putPosting(tokenID: 5, maxWeight: 0.5, data: Data([5, 5]))
        try store.putPosting(tokenID: 3, maxWeight: 0.5, data: Data([3]))
        try store.putPosting(tokenID: 5, maxWeight: 0, data: Data())  // empty: removed
        var postings: [Int32] = []
        try store.forEachPosting { token, _ in postings.append(token) }
        XCTAssertEqual(postings, [3])

        try store.putCodebook(name: "colbert", data: Data([4, 2]))
        XCTAssertEqual(try store.codebook(name: "colbert"), Data([4, 2]))
        XCTAssertNil(try store.savedWeights())
        try store.setSavedWeights("0.5,0.25,0.25")
        XCTAssertEqual(try store.savedWeights(), "0.5,0.25,0.25")
        try store.setSavedWeights(nil)
        XCTAssertNil(try store.savedWeights())
    }

    /// The header check opens the file outside SQLite only while this process has no
    /// connection to it: closing that descriptor would drop the connections' POSIX locks.
    func testHeaderIsReadOnlyWhenNoConnectionHasTheFileOpen() throws {
        let path = dir.appendingPathComponent("h.m3index").path
        do {
            let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 4))
            XCTAssertNil(OpenDatabaseFiles.headerIfUnopened(path, count: 16), "open in this process: not read")
            _ = store
        }
        XCTAssertEqual(OpenDatabaseFiles.headerIfUnopened(path, count: 16), Data("SQLite format 3\u{0}".utf8))
    }
}
