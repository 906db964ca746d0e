import XCTest
import M3Index
import M3TestSupport

/// Zipf-like sparse vectors with weights from a small set, so scores tie often.
struct SparseCorpus {
    var docs: [Int64: [SparseIndex.Term]] = [:]
    let vocabulary: Int
    private var cumulative: [Double] = []

    init(vocabulary: Int, exponent: Double = 1.1) {
        self.vocabulary = vocabulary
        var total = 0.0
        for r in 1...vocabulary {
            total += 1 / pow(Double(r), exponent)
            cumulative.append(total)
        }
        cumulative = cumulative.map { $0 / total }
    }

    /// A token drawn with P(rank r) ∝ 1/r^s; token ids are scrambled ranks.
    func token(_ rng: inout TestRNG) -> Int32 {
        let u = rng.uniform()
        var a = 0, b = cumulative.count - 1
        while a < b {
            let m = (a + b) / 2
            if cumulative[m] < u { a = m + 1 } else { b = m }
        }
        return Int32((a * 7919) % vocabulary)  // 7919 is prime: a permutation of ranks
    }

    func vector(_ rng: inout TestRNG, terms: Int, weights: [Float]) -> [SparseIndex.Term] {
        var seen = Set<Int32>()
        var out: [SparseIndex.Term] = []
        for _ in 0..<terms {
            let t = token(&rng)
            if seen.insert(t).inserted { out.append((token: t, weight: weights[rng.int(0..<weights.count)])) }
        }
        return out
    }

    /// The test's own exhaustive scorer: every document, query tokens ascending.
    func exactTopK(_ query: [SparseIndex.Term], k: Int) -> [IndexHit] {
        let q = query.sorted { $0.token < $1.token }
        var hits: [IndexHit] = []
        for (doc, terms) in docs {
            let w = Dictionary(uniqueKeysWithValues: terms.map { ($0.token, $0.weight) })
            var s: Float = 0
            var matched = false
            for t in q {
                if let x = w[t.token], x > 0 {
                    s += t.weight * x
                    matched = true
                }
            }
            if matched { hits.append(IndexHit(id: doc, score: s)) }
        }
        hits.sort(by: IndexHit.ranksBefore)
        return Array(hits.prefix(max(k, 0)))
    }
}

final class SparseIndexTests: XCTestCase {
    let docWeights: [Float] = [0.05, 0.1, 0.2, 0.25, 0.5]
    let queryWeights: [Float] = [0.1, 0.2, 0.3]

    func makeCorpus(documents: Int, seed: UInt64) throws -> (SparseIndex, SparseCorpus) {
        var rng = TestRNG(seed: seed)
        var corpus = SparseCorpus(vocabulary: 3000)
        var index = SparseIndex()
        // Shuffled ids, so posting lists also take inserts in the middle.
        var ids = (0..<documents).map { Int64($0 * 5 - 1000) }
        for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, rng.int(0..<(i + 1))) }
        for (i, id) in ids.enumerated() {
            // Every tenth document copies an earlier one: identical vectors, identical scores.
            let terms = i % 10 == 9 ? corpus.docs[ids[i - 1]]! : corpus.vector(&rng, terms: rng.int(5..<60), weights: docWeights)
            corpus.docs[id] = terms
            try index.add(document: id, terms: terms)
        }
        return (index, corpus)
    }

    func checkQueries(_ index: SparseIndex, _ corpus: SparseCorpus, seed: UInt64, count: Int,
                      file: StaticString = #filePath, line: UInt = #line) throws {
        var rng = TestRNG(seed: seed)
        var pruned = 0.0, brute = 0.0
        for i in 0..<count {
            let query = corpus.vector(&rng, terms: rng.int(1..<25), weights: queryWeights)
            let k = [1, 5, 10, 50, 10_000][i % 5]
            let expected = corpus.exactTopK(query, k: k)
            var t = now()
            let got = try index.search(query, k: k)
            pruned += now() - t
            t = now()
            let reference = try index.bruteForceSearch(query, k: k)
            brute += now() - t
            XCTAssertEqual(got, expected, "query \(i) k \(k)", file: file, line: line)
            XCTAssertEqual(reference, expected, "query \(i) k \(k) (brute force)", file: file, line: line)
        }
        print("sparse \(index.documentCount) docs: \(count) queries, MaxScore \(pruned * 1000 / Double(count)) ms/query, "
            + "brute force \(brute * 1000 / Double(count)) ms/query")
    }

    func testMaxScoreEqualsBruteForceExactly() throws {
        let (index, corpus) = try makeCorpus(documents: 3000, seed: 1)
        // The data does tie: count repeated scores in one long result list.
        var rng = TestRNG(seed: 5)
        let long = try index.bruteForceSearch(corpus.vector(&rng, terms: 10, weights: queryWeights), k: 3000)
        XCTAssertGreaterThan(long.count - Set(long.map(\.score)).count, 100, "expected many tied scores")
        try checkQueries(index, corpus, seed: 2, count: 150)
    }

    /// Filters (issue 14): at every selectivity, MaxScore with the filter in its traversal
    /// and the direct scoring of small allowed sets both equal the test's exhaustive ranking
    /// of the allowed documents, bit for bit; a predicate filter equals the set filter.
    func testFilteredSearchEqualsBruteForceOverAllowedDocuments() throws {
        let (index, corpus) = try makeCorpus(documents: 2500, seed: 7)
        var rng = TestRNG(seed: 8)
        let ids = corpus.docs.keys.sorted()
        for s in [1.0, 0.3, 0.1, 0.03, 0.01, 0.001] {
            var allowed = Set<Int64>()
            for id in ids where rng.uniform() < s { allowed.insert(id) }
            // Correlated too: the documents holding one frequent token.
            let frequent = corpus.token(&rng)
            let holding = Set(ids.filter { id in corpus.docs[id]!.contains { $0.token == frequent } })
            for (name, set) in [("random", allowed), ("token \(frequent)", holding)] {
                let filter = IDFilter(allowing: set)
                let predicate = IDFilter { set.contains($0) }
                var filtered = corpus
                filtered.docs = corpus.docs.filter { set.contains($0.key) }
                for i in 0..<20 {
                    let query = corpus.vector(&rng, terms: rng.int(1..<25), weights: queryWeights)
                    let k = [1, 10, 100][i % 3]
                    let expected = filtered.exactTopK(query, k: k)
                    XCTAssertEqual(try index.search(query, k: k, filter: filter), expected, "\(name) \(s) query \(i)")
                    XCTAssertEqual(try index.search(query, k: k, filter: predicate), expected, "\(name) \(s) predicate \(i)")
                    XCTAssertEqual(try index.bruteForceSearch(query, k: k, filter: filter), expected, "\(name) \(s) brute \(i)")
                }
            }
        }
    }

    func testRemoveAndReAddDocuments() throws {
        var (index, corpus) = try makeCorpus(documents: 2000, seed: 3)
        var rng = TestRNG(seed: 4)
        let ids = corpus.docs.keys.sorted()
        for id in ids where rng.int(0..<3) == 0 {
            XCTAssertTrue(index.remove(document: id))
            corpus.docs[id] = nil
        }
        XCTAssertFalse(index.remove(document: ids.first { corpus.docs[$0] == nil }!))
        XCTAssertEqual(index.documentCount, corpus.docs.count)
        try checkQueries(index, corpus, seed: 5, count: 60)
        // Back in, with new weights.
        for id in ids where corpus.docs[id] == nil && rng.int(0..<2) == 0 {
            let terms = corpus.vector(&rng, terms: 20, weights: docWeights)
            corpus.docs[id] = terms
            try index.add(document: id, terms: terms)
        }
        try checkQueries(index, corpus, seed: 6, count: 60)
        // Every posting list's max weight is still its maximum.
        for t in index.tokens {
            let list = index.postings[t]!
            XCTAssertEqual(list.maxWeight, list.weights.max())
            XCTAssertEqual(list.docs, list.docs.sorted())
            // Block maxima kept through inserts and removals equal ones derived afresh.
            var blocks: [Int64: Float] = [:]
            for (d, w) in zip(list.docs, list.weights) { blocks[d >> SparseIndex.blockShift] = max(blocks[d >> SparseIndex.blockShift] ?? 0, w) }
            XCTAssertEqual(list.blocks, blocks.keys.sorted())
            XCTAssertEqual(list.blockMaxima, blocks.keys.sorted().map { blocks[$0]! })
        }
    }

    func testEdgeCases() throws {
        var index = SparseIndex()
        XCTAssertEqual(try index.search([(token: 1, weight: 1)], k: 10), [])
        XCTAssertEqual(try index.search([], k: 10), [])
        try index.add(document: 7, terms: [(token: 1, weight: 0.5), (token: 2, weight: 0.25)])
        try index.add(document: 3, terms: [(token: 1, weight: 0.5)])
        try index.add(document: 9, weights: [2: 1, 5: 0.5])
        XCTAssertEqual(try index.search([(token: 1, weight: 1)], k: 0), [])
        XCTAssertEqual(try index.search([(token: 1, weight: 1)], k: -3), [])
        // k > matches: all matches; ties by id.
        XCTAssertEqual(try index.search([(token: 1, weight: 1)], k: 10), [IndexHit(id: 3, score: 0.5), IndexHit(id: 7, score: 0.5)])
        XCTAssertEqual(try index.search([(token: 42, weight: 1)], k: 10), [])
        // Repeated query tokens are summed; zero weights ignored.
        XCTAssertEqual(try index.search([(token: 2, weight: 1), (token: 2, weight: 1), (token: 1, weight: 0)], k: 1), [IndexHit(id: 9, score: 2)])
        XCTAssertEqual(index.weight(document: 7, token: 2), 0.25)
        XCTAssertNil(index.weight(document: 3, token: 2))

        XCTAssertThrowsError(try index.add(document: 7, terms: [(token: 4, weight: 1)])) { XCTAssertEqual($0 as? IndexError, .duplicateID(7)) }
        XCTAssertThrowsError(try index.add(document: 8, terms: [(token: 4, weight: 1), (token: 4, weight: 2)])) { XCTAssertEqual($0 as? IndexError, .duplicateToken(4)) }
        XCTAssertThrowsError(try index.add(document: 8, terms: [(token: 4, weight: -1)])) { XCTAssertEqual($0 as? IndexError, .invalidWeight(token: 4, weight: -1)) }
        XCTAssertThrowsError(try index.add(document: 8, terms: [(token: 4, weight: .nan)]))
        XCTAssertThrowsError(try index.search([(token: 4, weight: -1)], k: 1))
        XCTAssertFalse(index.contains(document: 8))

        // A document with no positive weight is not stored.
        try index.add(document: 11, terms: [(token: 1, weight: 0)])
        XCTAssertFalse(index.contains(document: 11))
        XCTAssertEqual(index.documentCount, 3)

        // Removing the last document of a token drops its list.
        XCTAssertTrue(index.remove(document: 9))
        XCTAssertEqual(index.tokens, [1, 2])
        XCTAssertTrue(index.remove(document: 7))
        XCTAssertTrue(index.remove(document: 3))
        XCTAssertEqual(index.tokenCount, 0)
        XCTAssertEqual(try index.search([(token: 1, weight: 1)], k: 10), [])
    }

    func testSeek() {
        let docs: [Int64] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21]
        for from in 0...docs.count {
            for target in Int64(0)...22 {
                let expected = (from..<docs.count).first { docs[$0] >= target } ?? docs.count
                XCTAssertEqual(SparseIndex.seek(docs, from: from, to: target), expected, "from \(from) target \(target)")
            }
        }
    }

    // MARK: Persistence

    func testPostingRoundTripAndIncrementalUpdates() throws {
        var (index, corpus) = try makeCorpus(documents: 1500, seed: 7)
        var store: [Int32: [UInt8]] = [:]
        func persist() {
            for t in index.dirtyTokens { store[t] = index.postingBytes(token: t) }  // nil deletes the row
            index.clearDirty()
        }
        func load() throws -> SparseIndex {
            var loader = SparseIndex.Loader()
            for (t, bytes) in store { try loader.add(token: t, bytes: bytes) }
            return loader.finish()
        }
        persist()
        XCTAssertEqual(store.count, index.tokenCount)
        var loaded = try load()
        XCTAssertEqual(loaded.postings, index.postings)
        XCTAssertEqual(loaded.tokensOfDocument, index.tokensOfDocument)
        XCTAssertEqual(loaded.dirtyTokens, [])
        try checkQueries(loaded, corpus, seed: 8, count: 20)

        // Incremental: remove and add a few documents, persist only the dirty tokens.
        for id in corpus.docs.keys.sorted().prefix(40) {
            index.remove(document: id)
            corpus.docs[id] = nil
        }
        var rng = TestRNG(seed: 9)
        for id in Int64(1_000_000)..<1_000_020 {
            let terms = corpus.vector(&rng, terms: 30, weights: docWeights)
            corpus.docs[id] = terms
            try index.add(document: id, terms: terms)
        }
        let dirty = index.dirtyTokens.count
        persist()
        loaded = try load()
        print("sparse: 40 removals + 20 adds dirtied \(dirty) of \(index.tokenCount) posting lists")
        XCTAssertEqual(loaded.postings, index.postings)
        XCTAssertEqual(loaded.tokensOfDocument, index.tokensOfDocument)
        try checkQueries(loaded, corpus, seed: 10, count: 20)

        // A loaded index holds no per-document token lists until its first change (opening
        // skips deriving them); counts, membership and the changes themselves must be those
        // of the index that never left memory.
        XCTAssertNil(loaded.documentTokens)
        XCTAssertEqual(loaded.documentCount, index.documentCount)
        let ids = corpus.docs.keys.sorted()
        for id in ids.prefix(5) { XCTAssertTrue(loaded.contains(document: id)) }
        XCTAssertFalse(loaded.contains(document: 999_999_999))
        XCTAssertThrowsError(try loaded.add(document: ids[0], terms: [(token: 5, weight: 0.5)]))  // a duplicate id
        loaded = try load()
        var original = index
        XCTAssertTrue(loaded.remove(document: ids[3]))
        XCTAssertTrue(original.remove(document: ids[3]))
        XCTAssertFalse(loaded.remove(document: ids[3]))
        let added = corpus.vector(&rng, terms: 25, weights: docWeights)
        try loaded.add(document: 2_000_000, terms: added)
        try original.add(document: 2_000_000, terms: added)
        XCTAssertNotNil(loaded.documentTokens)
        XCTAssertEqual(loaded.tokensOfDocument, original.tokensOfDocument)
        XCTAssertEqual(loaded.postings, original.postings)
        XCTAssertEqual(loaded.dirtyTokens, original.dirtyTokens)
        XCTAssertEqual(loaded.documentCount, original.documentCount)

        // Extreme ids survive the zigzag/gap encoding.
        var extremes = SparseIndex()
        for id in [Int64.min, -1, 0, 1, Int64.max] { try extremes.add(document: id, terms: [(token: 5, weight: 0.5)]) }
        var loader = SparseIndex.Loader()
        try loader.add(token: 5, bytes: extremes.postingBytes(token: 5)!)
        XCTAssertEqual(loader.finish().postings, extremes.postings)
    }

    func testCorruptPostingsAreRejected() throws {
        var index = SparseIndex()
        for d in Int64(0)..<20 { try index.add(document: d * 3, terms: [(token: 77, weight: Float(d % 4 + 1) * 0.1)]) }
        let good = index.postingBytes(token: 77)!
        func expectCorrupt(_ label: String, _ bytes: [UInt8], token: Int32 = 77, file: StaticString = #filePath, line: UInt = #line) {
            var loader = SparseIndex.Loader()
            do {
                try loader.add(token: token, bytes: bytes)
                XCTFail("\(label): accepted", file: file, line: line)
            } catch {
                guard case .corrupt = error else { return XCTFail("\(label): \(error)", file: file, line: line) }
            }
        }
        func with(_ offset: Int, _ replacement: [UInt8]) -> [UInt8] {
            var b = good
            b.replaceSubrange(offset..<offset + replacement.count, with: replacement)
            return b
        }
        let weightsStart = good.count - 20 * 4
        expectCorrupt("bad magic", with(0, [0, 0, 0, 0]))
        expectCorrupt("future version", with(4, [2]))
        expectCorrupt("unknown flags", with(5, [1]))
        expectCorrupt("other token", good, token: 78)
        expectCorrupt("count 0", with(10, [0, 0, 0, 0]))
        expectCorrupt("count too large", with(10, [0xff, 0xff, 0xff, 0x7f]))
        expectCorrupt("count one short", with(10, [19, 0, 0, 0]))
        expectCorrupt("gap 0 (not ascending)", with(19, [0]))
        expectCorrupt("max weight wrong", with(14, withUnsafeBytes(of: Float(0.3).bitPattern.littleEndian) { Array($0) }))
        expectCorrupt("NaN weight", with(weightsStart, [0, 0, 0xc0, 0x7f]))
        expectCorrupt("zero weight", with(weightsStart, [0, 0, 0, 0]))
        expectCorrupt("negative weight", with(weightsStart, withUnsafeBytes(of: Float(-0.1).bitPattern.littleEndian) { Array($0) }))
        expectCorrupt("truncated", Array(good.dropLast()))
        expectCorrupt("trailing bytes", good + [0])
        expectCorrupt("empty", [])
        expectCorrupt("endless varint", Array(good.prefix(18)) + [UInt8](repeating: 0xff, count: 200))
        var loader = SparseIndex.Loader()
        try loader.add(token: 77, bytes: good)
        XCTAssertThrowsError(try loader.add(token: 77, bytes: good), "token twice")

        // Random damage: rejected or loaded as a valid list, never a trap.
        var rng = TestRNG(seed: 1)
        var rejected = 0
        for _ in 0..<500 {
            var b = good
            switch rng.int(0..<3) {
            case 0: b[rng.int(0..<b.count)] = UInt8(rng.int(0..<256))
            case 1: b = Array(b.prefix(rng.int(0..<b.count)))
            default: b.insert(UInt8(rng.int(0..<256)), at: rng.int(0..<b.count))
            }
            var l = SparseIndex.Loader()
            do {
                try l.add(token: 77, bytes: b)
                let list = l.finish().postings[77]!
                XCTAssertEqual(list.docs, list.docs.sorted())
                XCTAssertEqual(list.maxWeight, list.weights.max())
            } catch {
                guard case .corrupt = error else { return XCTFail("\(error)") }
                rejected += 1
            }
        }
        print("sparse random damage: \(rejected) of 500 rejected, the rest decoded to valid lists")
    }
}
