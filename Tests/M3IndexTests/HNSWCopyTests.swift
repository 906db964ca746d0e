import XCTest
@testable import M3Index

/// `copy()` is what searches during writes rely on: the published graph must not change
/// when the writer changes its copy, and the copy must be the same graph as the original.
final class HNSWCopyTests: XCTestCase {
    private func records(_ g: HNSWIndex) -> [HNSWNodeRecord] { (0..<g.slotCount).map { g.nodeRecord(slot: $0) } }

    func testCopyIsIndependentAndEqual() throws {
        let data = EmbeddingModel(dimension: 16, seed: 3).sample(count: 700, seed: 4)
        let queries = EmbeddingModel(dimension: 16, seed: 3).sample(count: 20, seed: 5)
        for encoding in [HNSWIndex.VectorEncoding.float32, .int8] {
            let original = try HNSWIndex(parameters: .init(dimension: 16, m: 6, efConstruction: 40, seed: 9, encoding: encoding))
            for i in 0..<400 { try original.insert(id: Int64(i), vector: data[i]) }
            for i in stride(from: 0, to: 400, by: 5) { original.remove(id: Int64(i)) }
            _ = original.compact()  // free slots in the copy's path: inserts reuse them
            let before = records(original), meta = original.metaBytes()
            let hitsBefore = try queries.map { try original.search($0, k: 10) }

            let copy = original.copy()
            XCTAssertEqual(records(copy), before)
            XCTAssertEqual(copy.metaBytes(), meta)
            // The copy grows past the original's capacity and reuses its free slots.
            for i in 400..<700 { try copy.insert(id: Int64(i), vector: data[i]) }
            for i in stride(from: 1, to: 400, by: 7) { copy.remove(id: Int64(i)) }
            _ = copy.compact()
            _ = try copy.checkIntegrity()

            // The original is exactly as it was: records, header and answers.
            XCTAssertEqual(records(original), before, "\(encoding)")
            XCTAssertEqual(original.metaBytes(), meta)
            XCTAssertEqual(try queries.map { try original.search($0, k: 10) }, hitsBefore)
            _ = try original.checkIntegrity()

            // The same changes on the original give the copy's graph: nothing was lost in copying
            // (the level generator's state included).
            for i in 400..<700 { try original.insert(id: Int64(i), vector: data[i]) }
            for i in stride(from: 1, to: 400, by: 7) { original.remove(id: Int64(i)) }
            _ = original.compact()
            XCTAssertEqual(records(original), records(copy), "\(encoding)")
            XCTAssertEqual(original.metaBytes(), copy.metaBytes())
        }
    }

    func testCopyOfEmptyGraph() throws {
        let empty = try HNSWIndex(parameters: .init(dimension: 8))
        let copy = empty.copy()
        try copy.insert(id: 1, vector: [1, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(copy.count, 1)
    }
}
