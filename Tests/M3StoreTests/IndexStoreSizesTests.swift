import Foundation
@testable import M3Store
import XCTest

/// `IndexStore.sizes()` against independent references: payload sums of what was written,
/// and each b-tree's pages from SQLite's full dbstat walk (which `sizes()` no longer does).
final class IndexStoreSizesTests: XCTestCase {
    func testSizesMatchWrittenPayloadsAndFullDbstat() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3store-sizes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s.m3index").path
        let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 8))
        var tokens: Int64 = 0, dense: Int64 = 0, sparse: Int64 = 0, colbert: Int64 = 0, text: Int64 = 0
        try store.write {
            for d in 0..<40 {
                let doc = try store.insertDocument(path: "doc\(d).txt", size: 10, mtime: 1, contentHash: "h\(d)", metadata: d % 2 == 0 ? "{\"a\":\"b\"}" : nil)
                for c in 0..<3 {
                    // ColBERT blobs from a few bytes to several pages: rows with and without overflow pages.
                    let n = (d * 3 + c) * 257 % 20_000
                    let t = String(repeating: "é", count: d + c)
                    _ = try store.insertChunk(documentID: doc, ordinal: c, charStart: 0, charEnd: 1, tokenCount: n / 64 + 2, text: t,
                                              dense: Data(repeating: 1, count: 40), sparse: Data(repeating: 2, count: 8 * c),
                                              colbert: Data(repeating: 3, count: n), metadata: c == 1 ? "{\"page\":\"1\"}" : nil)
                    tokens += Int64(n / 64 + 2); dense += 40; sparse += Int64(8 * c); colbert += Int64(n); text += Int64(t.utf8.count)
                }
            }
            try store.putHNSW(header: [1, 2, 3], nodes: (0..<300).map { (slot: $0, record: [UInt8](repeating: 7, count: 100 + $0 * 13)) })
            for token in 0..<50 { try store.putPosting(tokenID: Int32(token), maxWeight: 1, data: Data(repeating: 9, count: token * 600)) }
            try store.putCodebook(name: "colbert", data: Data(repeating: 4, count: 9000))
            if try store.hasGraphImageTable() {
                try store.putGraphImagePart(0, [UInt8](repeating: 5, count: 50_000), known: [:])
                try store.putGraphImagePart(1, [UInt8](repeating: 6, count: 123), known: [:])
            }
        }
        try store.checkpoint()
        let z = try store.sizes()
        XCTAssertEqual(z.documents, 40)
        XCTAssertEqual(z.chunks, 120)
        XCTAssertEqual(z.tokens, tokens)
        XCTAssertEqual(z.denseBytes, dense)
        XCTAssertEqual(z.sparseChunkBytes, sparse)
        XCTAssertEqual(z.colbertBytes, colbert)
        XCTAssertEqual(z.textBytes, text)
        XCTAssertEqual(z.codebookBytes, 9000)
        XCTAssertEqual(z.fileBytes, try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64)

        guard let stat = try? store.db.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name") else {
            // Without dbstat nothing is paged; the graph and postings are payload sums.
            XCTAssertTrue(z.pages.isEmpty)
            XCTAssertEqual(z.hnswBytes, Int64((0..<300).reduce(0) { $0 + 100 + $1 * 13 }))
            XCTAssertEqual(z.postingBytes, Int64((0..<50).reduce(0) { $0 + $1 * 600 }))
            return
        }
        var full: [String: Int64] = [:]
        while try stat.step() { full[stat.text(0)] = stat.int(1) }
        let expected = full.filter { IndexStore.pagedTrees.contains($0.key) }
        XCTAssertEqual(z.pages, expected)
        XCTAssertEqual(Set(z.pages.keys), Set(IndexStore.pagedTrees).intersection(full.keys))
        XCTAssertGreaterThan(z.pages["postings"] ?? 0, Int64((0..<50).reduce(0) { $0 + $1 * 600 }))
    }
}
