import Dispatch
import M3Index
import XCTest
import M3TestSupport

final class HNSWIndexTests: XCTestCase {
    /// Recall@10 against the exact oracle on 20k 128-d embedding-like vectors at the default
    /// parameters; then with 10% removed (tombstones), after compaction, and after the
    /// removed vectors are inserted again into the freed slots.
    func testRecall20k128dWithDeletesAndCompaction() throws {
        let n = 20_000, d = 128, k = 10
        let model = EmbeddingModel(dimension: d, latent: 32, noise: 0.5, seed: 7)
        let data = model.sample(count: n, seed: 1)
        let queries = model.sample(count: 200, seed: 2)

        let t0 = now()
        let index = try HNSWIndex(parameters: .init(dimension: d))
        for (i, v) in data.enumerated() { try index.insert(id: Int64(i), vector: v) }
        let buildTime = now() - t0
        var exact = try BruteForceIndex(dimension: d)
        for (i, v) in data.enumerated() { try exact.add(id: Int64(i), vector: v) }

        var truth: [[IndexHit]] = []
        func measure(_ label: String, ef: Int? = nil) throws -> Double {
            let t = now()
            let approx = try queries.map { try index.search($0, k: k, ef: ef) }
            let elapsed = now() - t
            for hits in approx {
                XCTAssertEqual(hits.count, k)
                XCTAssertTrue(zip(hits, hits.dropFirst()).allSatisfy { IndexHit.ranksBefore($0, $1) }, "not sorted")
            }
            let r = recall(approx, truth, k: k)
            print("HNSW 20k×128 \(label) ef \(ef ?? index.efSearch): recall@10 \(r), \(elapsed * 1000 / Double(queries.count)) ms/query")
            return r
        }

        print("HNSW 20k×128 build: \(buildTime) s, \(try index.checkIntegrity())")
        truth = try queries.map { try exact.search($0, k: k) }
        for ef in [10, 32] { _ = try measure("all live", ef: ef) }
        XCTAssertGreaterThanOrEqual(try measure("all live"), 0.95)

        // 10% removed: tombstones stay in the graph, are never returned.
        var rng = TestRNG(seed: 3)
        var removed = Set<Int64>()
        while removed.count < n / 10 { removed.insert(Int64(rng.int(0..<n))) }
        for id in removed.sorted() {
            XCTAssertTrue(index.remove(id: id))
            XCTAssertTrue(exact.remove(id: id))
        }
        XCTAssertEqual(index.count, n - removed.count)
        XCTAssertEqual(index.deletedCount, removed.count)
        truth = try queries.map { try exact.search($0, k: k) }
        XCTAssertGreaterThanOrEqual(try measure("10% deleted"), 0.95)
        for q in queries.prefix(20) {
            XCTAssertTrue(try index.search(q, k: 100).allSatisfy { !removed.contains($0.id) })
        }
        try index.checkIntegrity()

        // Compaction: tombstones relinked around and freed.
        let t1 = now()
        XCTAssertEqual(index.compact(), removed.count)
        let report = try index.checkIntegrity()
        print("HNSW 20k×128 compact: \(now() - t1) s, \(report)")
        XCTAssertEqual(report.free, removed.count)
        XCTAssertEqual(report.deleted, 0)
        XCTAssertGreaterThanOrEqual(try measure("after compact"), 0.95)

        // Re-inserting takes the freed slots: the slot count does not grow.
        for id in removed.sorted() {
            try index.insert(id: id, vector: data[Int(id)])
            try exact.add(id: id, vector: data[Int(id)])
        }
        XCTAssertEqual(index.slotCount, n)
        XCTAssertEqual(index.count, n)
        try index.checkIntegrity()
        truth = try queries.map { try exact.search($0, k: k) }
        XCTAssertGreaterThanOrEqual(try measure("re-inserted"), 0.95)
    }

    func testRecall1024d() throws {
        let n = 2000, d = 1024, k = 10
        let model = EmbeddingModel(dimension: d, latent: 32, noise: 0.5, seed: 8)
        let data = model.sample(count: n, seed: 1)
        let queries = model.sample(count: 100, seed: 2)
        let t0 = now()
        let index = try HNSWIndex(parameters: .init(dimension: d))
        var exact = try BruteForceIndex(dimension: d)
        for (i, v) in data.enumerated() {
            try index.insert(id: Int64(1_000_000 + i), vector: v)
            try exact.add(id: Int64(1_000_000 + i), vector: v)
        }
        let buildTime = now() - t0
        let r = recall(try queries.map { try index.search($0, k: k) }, try queries.map { try exact.search($0, k: k) }, k: k)
        print("HNSW 2k×1024 build+oracle \(buildTime) s: recall@10 \(r) at ef \(index.efSearch)")
        XCTAssertGreaterThanOrEqual(r, 0.95)
        try index.checkIntegrity()
    }

    /// The same seed and inserts give the same graph, record for record.
    func testDeterministicBuild() throws {
        let data = EmbeddingModel(dimension: 16, seed: 1).sample(count: 500, seed: 2)
        func build() throws -> HNSWIndex {
            let index = try HNSWIndex(parameters: .init(dimension: 16, m: 8, efConstruction: 50, seed: 42))
            for (i, v) in data.enumerated() { try index.insert(id: Int64(i), vector: v) }
            return index
        }
        let a = try build(), b = try build()
        XCTAssertEqual(a.metaBytes(), b.metaBytes())
        for s in 0..<a.slotCount { XCTAssertEqual(a.nodeRecord(slot: s), b.nodeRecord(slot: s)) }
        let other = try HNSWIndex(parameters: .init(dimension: 16, m: 8, efConstruction: 50, seed: 43))
        for (i, v) in data.enumerated() { try other.insert(id: Int64(i), vector: v) }
        XCTAssertNotEqual(a.metaBytes(), other.metaBytes(), "a different seed should draw different levels")
    }

    func testEdgeCases() throws {
        let index = try HNSWIndex(parameters: .init(dimension: 4, m: 4, efConstruction: 20, efSearch: 8))
        let q: [Float] = [1, 0, 0, 0]
        XCTAssertEqual(try index.search(q, k: 5), [])  // empty
        try index.checkIntegrity()

        try index.insert(id: 10, vector: [1, 0, 0, 0])
        XCTAssertEqual(try index.search(q, k: 5), [IndexHit(id: 10, score: 1)])
        XCTAssertEqual(try index.search(q, k: 0), [])
        XCTAssertEqual(try index.search(q, k: -1), [])

        let vs = EmbeddingModel(dimension: 4, latent: 4, topics: 3, seed: 5).sample(count: 60, seed: 6)
        for (i, v) in vs.enumerated() { try index.insert(id: Int64(100 + i), vector: v) }
        // k > count: every live item, sorted, even with ef < k.
        let all = try index.search(q, k: 1000, ef: 4)
        XCTAssertEqual(all.count, 61)
        XCTAssertEqual(Set(all.map(\.id)).count, 61)
        XCTAssertTrue(zip(all, all.dropFirst()).allSatisfy { IndexHit.ranksBefore($0, $1) })

        XCTAssertThrowsError(try index.insert(id: 10, vector: q)) { XCTAssertEqual($0 as? IndexError, .duplicateID(10)) }
        XCTAssertThrowsError(try index.insert(id: 99, vector: [1, 0, 0])) { XCTAssertEqual($0 as? IndexError, .dimensionMismatch(expected: 4, actual: 3)) }
        XCTAssertThrowsError(try index.insert(id: 99, vector: [2, 0, 0, 0])) { XCTAssertEqual($0 as? IndexError, .notNormalized(norm: 2)) }
        XCTAssertThrowsError(try index.insert(id: 99, vector: [.infinity, 0, 0, 0])) { XCTAssertEqual($0 as? IndexError, .nonFiniteValue(position: 0)) }
        XCTAssertThrowsError(try index.search([1, 0], k: 1))
        XCTAssertFalse(index.remove(id: 12345))

        // Remove everything but one: searches still find it through the tombstones.
        for i in 0..<60 { XCTAssertTrue(index.remove(id: Int64(100 + i))) }
        XCTAssertEqual(try index.search([0, 0, 0, 1], k: 3).map(\.id), [10])
        try index.checkIntegrity()
        XCTAssertTrue(index.remove(id: 10))
        XCTAssertEqual(try index.search(q, k: 3), [])
        try index.checkIntegrity()

        // All tombstones: the next insert compacts first and starts over in the freed slots.
        try index.insert(id: 7, vector: q)
        XCTAssertEqual(index.count, 1)
        XCTAssertEqual(index.deletedCount, 0)
        XCTAssertEqual(index.slotCount, 61)
        XCTAssertEqual(try index.search(q, k: 3).map(\.id), [7])
        try index.checkIntegrity()
        // A removed id can come back.
        try index.insert(id: 10, vector: [0, 1, 0, 0])
        XCTAssertEqual(try index.search([0, 1, 0, 0], k: 1).map(\.id), [10])

        XCTAssertThrowsError(try HNSWIndex(parameters: .init(dimension: 0)))
        XCTAssertThrowsError(try HNSWIndex(parameters: .init(dimension: 8, m: 1)))
        XCTAssertThrowsError(try HNSWIndex(parameters: .init(dimension: 8, efConstruction: 0)))
    }

    /// Duplicate vectors (score ties everywhere) and ties broken by id.
    func testDuplicateVectors() throws {
        let index = try HNSWIndex(parameters: .init(dimension: 3, m: 4, efConstruction: 16))
        for i in 0..<50 { try index.insert(id: Int64(100 - i), vector: [0, 1, 0]) }
        let hits = try index.search([0, 1, 0], k: 5, ef: 64)
        XCTAssertEqual(hits.map(\.id), [51, 52, 53, 54, 55])
        try index.checkIntegrity()
    }

    /// checkIntegrity catches each kind of broken link (via the test hooks).
    func testIntegrityCheckCatchesBrokenInvariants() throws {
        func fresh() throws -> HNSWIndex {
            let index = try HNSWIndex(parameters: .init(dimension: 8, m: 4, efConstruction: 20))
            for (i, v) in EmbeddingModel(dimension: 8, latent: 4, seed: 9).sample(count: 100, seed: 1).enumerated() {
                try index.insert(id: Int64(i), vector: v)
            }
            try index.checkIntegrity()
            return index
        }
        var index = try fresh()
        index.links0[5 * (index.maxM0 + 1) + 1] = 5  // self link
        XCTAssertThrowsError(try index.checkIntegrity()) { print("caught:", $0) }

        index = try fresh()
        index.links0[5 * (index.maxM0 + 1) + 1] = 100_000  // out of range
        XCTAssertThrowsError(try index.checkIntegrity()) { print("caught:", $0) }

        index = try fresh()
        index.links0[5 * (index.maxM0 + 1)] = UInt32(index.maxM0 + 1)  // degree over the bound
        XCTAssertThrowsError(try index.checkIntegrity()) { print("caught:", $0) }

        index = try fresh()
        index.entryPoint = Int32(index.levels.firstIndex { $0 < index.maxLevel }!)  // entry point below max level
        XCTAssertThrowsError(try index.checkIntegrity()) { print("caught:", $0) }

        index = try fresh()
        // Cut every link to slot 7: unreachable.
        for s in 0..<index.slotCount where s != 7 {
            index.setNeighbors(UInt32(s), 0, index.neighbors(UInt32(s), 0).filter { $0 != 7 })
        }
        XCTAssertThrowsError(try index.checkIntegrity()) { error in
            XCTAssertTrue("\(error)".contains("unreachable"), "\(error)")
        }
        // compact() links it back in.
        XCTAssertEqual(index.compact(), 0)
        XCTAssertEqual(try index.checkIntegrity().reachableLive, 100)
    }
}


final class HNSWConcurrencyTests: XCTestCase {
    /// Many readers at once (the documented use: searches concurrent with each other, never
    /// with a mutation) get exactly the serial results; each borrows its own scratch.
    func testConcurrentSearchesMatchSerial() throws {
        let model = EmbeddingModel(dimension: 32, latent: 8, seed: 31)
        let index = try HNSWIndex(parameters: .init(dimension: 32, m: 8, efConstruction: 64))
        for (i, v) in model.sample(count: 2000, seed: 1).enumerated() { try index.insert(id: Int64(i), vector: v) }
        for i in stride(from: 0, to: 2000, by: 5) { index.remove(id: Int64(i)) }
        let queries = model.sample(count: 64, seed: 2)
        let serial = try queries.map { try index.search($0, k: 10) }
        /// One slot per search; each thread writes only its own.
        final class Slots: @unchecked Sendable {
            var hits: [[IndexHit]]
            init(_ n: Int) { hits = [[IndexHit]](repeating: [], count: n) }
        }
        let slots = Slots(queries.count * 4)
        slots.hits.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer
            DispatchQueue.concurrentPerform(iterations: out.count) { i in
                out[i] = (try? index.search(queries[i % queries.count], k: 10)) ?? []
            }
        }
        for (i, hits) in slots.hits.enumerated() { XCTAssertEqual(hits, serial[i % queries.count], "search \(i)") }
    }
}
