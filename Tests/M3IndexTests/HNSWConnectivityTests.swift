import M3Index
import XCTest
import M3TestSupport

/// Issue 16 item 1: no input may leave nodes unreachable. Pathological corpora (identical,
/// few distinct, near-identical, clustered, and the repeated-log shape of the report), built
/// one at a time and in parallel batches, in both encodings, then thinned by deletes,
/// compacted and refilled: after every step `checkIntegrity()` (which walks every link from
/// the entry point, trusting no tree) finds no unreachable node, and recall@10 against the
/// brute-force oracle stays ≥ 0.99.
final class HNSWConnectivityTests: XCTestCase {
    let d = 32

    /// A corpus and the queries that probe it.
    struct Corpus {
        let name: String
        let vectors: [[Float]]
        let queries: [[Float]]
    }

    func noise(_ rng: inout TestRNG, scale: Float) -> [Float] { (0..<d).map { _ in scale * rng.gaussian() } }

    func unit(_ rng: inout TestRNG) -> [Float] { normalized(noise(&rng, scale: 1)) }

    func corpora() -> [Corpus] {
        var rng = TestRNG(seed: 1601)
        let n = 1000
        let randomQueries = (0..<40).map { _ in unit(&rng) }
        var out: [Corpus] = []

        let one = unit(&rng)
        out.append(Corpus(name: "all identical", vectors: Array(repeating: one, count: n), queries: randomQueries))

        let few = (0..<4).map { _ in unit(&rng) }
        out.append(Corpus(name: "four distinct", vectors: (0..<n).map { few[$0 % 4] }, queries: randomQueries + few))

        // Noise far below the vectors' spread: scores differ in the 4th decimal.
        let base = unit(&rng)
        let near = (0..<n).map { _ in normalized(zip(base, noise(&rng, scale: 3e-3)).map { $0 + $1 }) }
        out.append(Corpus(name: "near-identical", vectors: near, queries: randomQueries + near.prefix(20).map { $0 }))

        let model = EmbeddingModel(dimension: d, latent: 8, topics: 6, spread: 0.3, noise: 0.05, seed: 1602)
        out.append(Corpus(name: "clusters", vectors: model.sample(count: n, seed: 1603), queries: model.sample(count: 40, seed: 1604)))

        // The report's shape: a log of one repeated line (a few chunk phases, each repeated
        // hundreds of times, some with one-token variations), between 12 small documents.
        let phases = (0..<5).map { _ in unit(&rng) }
        let docs = model.sample(count: 12, seed: 1605)
        var log: [[Float]] = []
        for i in 0..<718 {
            let v = phases[i % 5]
            log.append(i % 97 == 0 ? normalized(zip(v, noise(&rng, scale: 0.02)).map { $0 + $1 }) : v)
        }
        var mixed = Array(docs.prefix(6)) + log + Array(docs.suffix(6))
        mixed.swapAt(3, 400)
        out.append(Corpus(name: "repeated log + 12 documents", vectors: mixed, queries: docs + randomQueries.prefix(10)))
        return out
    }

    /// Recall@k counting ties: a hit is right if its exact score reaches the oracle's k-th
    /// (any k of 1,000 identical vectors are an exact answer). The hits' scores must be exact.
    func tieRecall(_ index: HNSWIndex, _ oracle: BruteForceIndex, _ vectors: [Int64: [Float]], _ queries: [[Float]],
                   k: Int = 10, ef: Int = 200) throws -> Double {
        var found = 0, wanted = 0
        for q in queries {
            let truth = try oracle.search(q, k: k)
            guard let kth = truth.last?.score else { continue }
            let hits = try index.search(q, k: k, ef: ef) { id in Similarity.dot(q, vectors[id]!) }
            XCTAssertEqual(Set(hits.map(\.id)).count, hits.count, "duplicate ids")
            wanted += truth.count
            found += hits.filter { $0.score >= kth - 1e-6 && vectors[$0.id] != nil }.count
        }
        return wanted == 0 ? 1 : Double(found) / Double(wanted)
    }

    func assertConnected(_ index: HNSWIndex, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let report = try index.checkIntegrity()
            XCTAssertEqual(report.reachableLive, index.count, label, file: file, line: line)
        } catch {
            XCTFail("\(label): \(error)", file: file, line: line)
        }
    }

    func testNoCorpusDisconnectsTheGraph() throws {
        for corpus in corpora() {
            for encoding in [HNSWIndex.VectorEncoding.float32, .int8] {
                for threads in [1, 2] {
                    try runScenario(corpus, encoding: encoding, threads: threads)
                }
            }
        }
    }

    func runScenario(_ corpus: Corpus, encoding: HNSWIndex.VectorEncoding, threads: Int) throws {
        let label = "\(corpus.name), \(encoding), \(threads == 1 ? "insert" : "insertBatch")"
        // int8 ranks with codes: the oracle ranks the same codes (below the codes' resolution,
        // near-identical vectors tie; the exact rescoring tests use ordinary data).
        let index = try HNSWIndex(parameters: .init(dimension: d, m: 16, efConstruction: 200, encoding: encoding))
        var vectors: [Int64: [Float]] = [:]
        var oracle = try BruteForceIndex(dimension: d)
        func oracleAdd(_ id: Int64, _ v: [Float]) throws {
            let graphVector = encoding == .int8 ? index.vector(forID: id)! : v
            vectors[id] = graphVector
            try oracle.add(id: id, vector: graphVector)
        }

        let ids = corpus.vectors.indices.map { Int64($0 * 3 + 1) }
        if threads == 1 {
            for (id, v) in zip(ids, corpus.vectors) { try index.insert(id: id, vector: v) }
        } else {
            let half = ids.count / 2
            for range in [0..<half, half..<ids.count] {
                let flat = range.flatMap { corpus.vectors[$0] }
                try flat.withUnsafeBufferPointer { try index.insertBatch(ids: range.map { ids[$0] }, vectors: $0, threads: 2) }
            }
        }
        for (id, v) in zip(ids, corpus.vectors) { try oracleAdd(id, v) }
        assertConnected(index, "\(label): built")
        var r = try tieRecall(index, oracle, vectors, corpus.queries)
        XCTAssertGreaterThanOrEqual(r, 0.99, "\(label): built")

        // Every node, even each of a thousand copies, is found by a search that asks for all.
        let q = corpus.queries[0]
        let all = try index.search(q, k: ids.count, ef: ids.count)
        XCTAssertEqual(all.count, ids.count, "\(label): a search for everything")

        // Delete a third (and every copy of one vector), search, compact, search, refill.
        var rng = TestRNG(seed: 77)
        var removed: [Int64] = []
        let firstVector = corpus.vectors[0]
        for (i, id) in ids.enumerated() where rng.int(0..<3) == 0 || corpus.vectors[i] == firstVector && i % 2 == 0 {
            XCTAssertTrue(index.remove(id: id))
            XCTAssertTrue(oracle.remove(id: id))
            vectors[id] = nil
            removed.append(id)
        }
        assertConnected(index, "\(label): tombstones")
        r = try tieRecall(index, oracle, vectors, corpus.queries)
        XCTAssertGreaterThanOrEqual(r, 0.99, "\(label): tombstones")

        index.compact()
        assertConnected(index, "\(label): compacted")
        r = try tieRecall(index, oracle, vectors, corpus.queries)
        XCTAssertGreaterThanOrEqual(r, 0.99, "\(label): compacted")

        for id in removed {
            let i = Int((id - 1) / 3)
            try index.insert(id: id, vector: corpus.vectors[i])
            try oracleAdd(id, corpus.vectors[i])
        }
        assertConnected(index, "\(label): re-inserted")
        r = try tieRecall(index, oracle, vectors, corpus.queries)
        XCTAssertGreaterThanOrEqual(r, 0.99, "\(label): re-inserted")

        // The stored form keeps the tree: a reloaded graph needs no repair and is the same.
        var store = FakeStore()
        store.persist(index)
        let loaded = try store.load(encoding: encoding)
        XCTAssertFalse(loaded.treeNeedsRepair, label)
        XCTAssertEqual(try loaded.checkIntegrity(), try index.checkIntegrity(), label)
        print("\(label): \(try index.checkIntegrity()), recall \(r)")
    }

    /// The report's case end to end: every one of the 12 documents is its own top hit, and
    /// the copies of the log line are not spread over other nodes' lists.
    func testRepeatedLogKeepsEveryDocumentFindable() throws {
        let corpus = corpora().last!
        let index = try HNSWIndex(parameters: .init(dimension: d))
        for (i, v) in corpus.vectors.enumerated() { try index.insert(id: Int64(i), vector: v) }
        assertConnected(index, "repeated log")
        let docIDs = Array(0..<6) + Array((corpus.vectors.count - 6)..<corpus.vectors.count)
        for i in docIDs {
            let id = Int64(i == 3 ? 400 : (i == 400 ? 3 : i))  // the swapped pair
            XCTAssertEqual(try index.search(corpus.vectors[Int(id)], k: 1, ef: 16).first?.id, id, "document \(id)")
        }
        // Copies join as level-0 leaves: the upper layers hold (nearly) distinct vectors only.
        let upper = (0..<index.slotCount).filter { index.levels[$0] > 0 }
        let distinctUpper = Set(upper.map { corpus.vectors[$0] })
        XCTAssertLessThanOrEqual(upper.count - distinctUpper.count, 0, "copies on upper layers")
    }

    /// A graph stored before the tree existed (its first links are not parents) and damaged
    /// the way the report's files were (nodes no link reaches): `check` sees it, the next
    /// change repairs it, and the repair persists through the dirty slots.
    func testLegacyGraphIsRepairedOnFirstChange() throws {
        let model = EmbeddingModel(dimension: d, latent: 8, seed: 1610)
        let data = model.sample(count: 800, seed: 1611)
        let built = try HNSWIndex(parameters: .init(dimension: d, m: 6, efConstruction: 40))
        for (i, v) in data.enumerated() { try built.insert(id: Int64(i), vector: v) }
        var store = FakeStore()
        store.persist(built)
        // Legacy layout: reverse every layer-0 list; then cut 1 node in 8 off entirely.
        var rng = TestRNG(seed: 5)
        var cut = Set<UInt32>()
        while cut.count < 100 {
            let s = UInt32(rng.int(0..<800))
            if s != UInt32(built.entryPoint) { cut.insert(s) }
        }
        for (slot, row) in store.rows {
            var links = built.neighbors(UInt32(slot), 0).reversed().filter { !cut.contains($0) }
            if cut.contains(UInt32(slot)) { links = links.filter { !cut.contains($0) } }
            store.rows[slot]!.record = HNSWNodeRecord(slot: slot, id: row.record.id,
                                                      bytes: recordBytes(built.nodeRecord(slot: slot).bytes, layer0: links))
        }
        let legacy = try store.load()
        XCTAssertTrue(legacy.treeNeedsRepair)
        XCTAssertThrowsError(try legacy.checkIntegrity()) { XCTAssertTrue("\($0)".contains("unreachable"), "\($0)") }
        try legacy.insert(id: 10_000, vector: model.sample(count: 1, seed: 1612)[0])
        XCTAssertFalse(legacy.treeNeedsRepair)
        assertConnected(legacy, "legacy after one insert")
        store.persist(legacy)
        let reloaded = try store.load()
        XCTAssertFalse(reloaded.treeNeedsRepair)
        assertConnected(reloaded, "legacy reloaded")
    }

    /// A record's bytes with its layer-0 list replaced (state, level, layers as stored).
    func recordBytes(_ bytes: [UInt8], layer0: [UInt32]) -> [UInt8] {
        let n0 = Int(bytes[2]) | Int(bytes[3]) << 8
        var out = Array(bytes[0..<2])
        out += [UInt8(layer0.count & 0xff), UInt8(layer0.count >> 8)]
        for x in layer0 { out += withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        out += bytes[(4 + 4 * n0)...]
        return out
    }
}
