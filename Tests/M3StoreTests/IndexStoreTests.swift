import Foundation
import M3Store
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
        let settings = IndexSettings(modelID: "abc", dimension: 8)
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
        XCTAssertThrowsError(try IndexStore(path: other, createWith: IndexSettings(modelID: "m", dimension: 4))) { error in
            guard case StoreError.notAnIndex = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try IndexStore(path: dir.appendingPathComponent("missing.m3index").path)) { error in
            guard case StoreError.missing = error else { return XCTFail("\(error)") }
        }
    }

    func testNewerFormatIsRefused() throws {
        let path = dir.appendingPathComponent("b.m3index").path
        do {
            let store = try IndexStore(path: path, createWith: IndexSettings(modelID: "m", dimension: 4))
            try store.setMeta("format_version", "99")
        }
        XCTAssertThrowsError(try IndexStore(path: path)) { error in
            guard case StoreError.newerFormat(_, 99, _) = error else { return XCTFail("\(error)") }
        }
    }

    func testDeletingADocumentRemovesItsChunks() throws {
        let store = try IndexStore(path: dir.appendingPathComponent("c.m3index").path,
                                   createWith: IndexSettings(modelID: "m", dimension: 4))
        let id = try store.insertDocument(path: "d", size: 1, mtime: 0, contentHash: "h", metadata: "{\"k\":1}")
        for i in 0..<3 {
            _ = try store.insertChunk(documentID: id, ordinal: i, charStart: i, charEnd: i + 1, tokenCount: 1, text: "t",
                                      dense: Data(), sparse: Data(), colbert: Data())
        }
        XCTAssertEqual(try store.deleteDocument(id: id).count, 3)
        XCTAssertEqual(try store.counts().chunks, 0)
    }
}
