import M3Index
import XCTest

/// The parallel construction (`insertBatch`) against the brute-force oracle.
final class HNSWBatchTests: XCTestCase {
    /// 3k × 64-d in two batches on 2 threads (the second links into the first), then single
    /// inserts and a delete on top: recall against brute force, integrity, and the
    /// persistence round trip of the batch-built graph.
    func testParallelBatchRecallAndIntegrity() throws {
        let d = 64, k = 10
        let model = EmbeddingModel(dimension: d, seed: 21)
        let data = model.sample(count: 3000, seed: 22)
        let queries = model.sample(count: 100, seed: 23)
        let index = try HNSWIndex(parameters: .init(dimension: d, m: 8, efConstruction: 100))
        var exact = try BruteForceIndex(dimension: d)
        for (i, v) in data.enumerated() { try exact.add(id: Int64(i), vector: v) }
        var store = FakeStore()  // persisted after each batch: the batch must mark what it changed dirty
        for range in [0..<2000, 2000..<2900] {
            let flat = range.flatMap { data[$0] }
            try flat.withUnsafeBufferPointer { try index.insertBatch(ids: range.map(Int64.init), vectors: $0, threads: 2) }
            store.persist(index)
        }
        for i in 2900..<3000 { try index.insert(id: Int64(i), vector: data[i]) }
        store.persist(index)
        let loaded = try store.load()
        XCTAssertEqual(loaded.metaBytes(), index.metaBytes())
        for s in 0..<index.slotCount { XCTAssertEqual(loaded.nodeRecord(slot: s), index.nodeRecord(slot: s)) }
        XCTAssertEqual(index.count, 3000)
        let r = recall(try queries.map { try index.search($0, k: k, ef: 64) },
                       try queries.map { try exact.search($0, k: k) }, k: k)
        XCTAssertGreaterThanOrEqual(r, 0.95)
        try index.checkIntegrity()
        XCTAssertTrue(index.remove(id: 5))
        XCTAssertFalse(try index.search(data[5], k: 3).contains { $0.id == 5 })
    }

    /// Bad input is refused before anything changes.
    func testBatchValidatesFirst() throws {
        let index = try HNSWIndex(parameters: .init(dimension: 2))
        try index.insert(id: 1, vector: [1, 0])
        let rows: [Float] = [0, 1, 0.6, 0.8]
        try rows.withUnsafeBufferPointer { v in
            XCTAssertThrowsError(try index.insertBatch(ids: [1, 2], vectors: v, threads: 2))   // 1 is live
            XCTAssertThrowsError(try index.insertBatch(ids: [3, 3], vectors: v, threads: 2))   // twice
            XCTAssertThrowsError(try index.insertBatch(ids: [3], vectors: v, threads: 2))      // wrong length
        }
        let bad: [Float] = [0, 1, 2, 0]
        try bad.withUnsafeBufferPointer { v in
            XCTAssertThrowsError(try index.insertBatch(ids: [3, 4], vectors: v, threads: 2))   // not unit
        }
        XCTAssertEqual(index.count, 1)
        try rows.withUnsafeBufferPointer { try index.insertBatch(ids: [3, 4], vectors: $0, threads: 2) }
        XCTAssertEqual(try index.search([0.6, 0.8], k: 1).first?.id, 4)
        try index.checkIntegrity()
    }
}
