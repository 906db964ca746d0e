import Foundation
import M3Index
import M3Model
@testable import M3Search
import M3Store
import XCTest

/// Compressed ColBERT and dense storage in an index (the codecs themselves are tested in
/// M3IndexTests/VectorCodingTests): indexes of every storage against brute force over what
/// they store, the recorded settings, and `IndexInfo` sizes against independent sums.
final class StorageTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-storage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Seeded rows for codec tests: M3Index's SplitMix64 with Gaussian and unit-row helpers.
    struct RNG {
        var base: SplitMix64
        init(state: UInt64) { base = SplitMix64(seed: state) }
        mutating func next() -> UInt64 { base.next() }
        mutating func gaussian() -> Float {
            let u1 = max(Double(next() >> 11) * 0x1p-53, 1e-300), u2 = Double(next() >> 11) * 0x1p-53
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
        mutating func unitRows(_ n: Int, _ d: Int) -> [Float] {
            var v: [Float] = []
            for _ in 0..<n {
                let row = (0..<d).map { _ in gaussian() }
                let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                v += row.map { $0 / norm }
            }
            return v
        }
    }

    /// The first `count` plain-text corpus files, cut to `characters` (the test stays fast).
    func corpusDocuments(_ count: Int, characters: Int = 2500) throws -> [DocumentInput] {
        let folder = fixture("corpus")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".txt") }.sorted()
        return try names.prefix(count).map {
            DocumentInput(id: $0, text: String(try String(contentsOfFile: folder + "/" + $0, encoding: .utf8).prefix(characters)))
        }
    }

    /// A PQ index keeps float16 rows (scored exactly, like a float16 index) until it holds
    /// `codebookMinimumRows` rows; the write that gets there trains the codebook and
    /// re-encodes the rows already stored, which then equal the float16 index's rows
    /// encoded with that codebook.
    func testProductQuantizerWaitsForEnoughRowsThenReencodes() throws {
        let model = try SearchEngineTests.model()
        let d = model.config.hiddenSize
        let docs = try corpusDocuments(6)
        let pq = ColBERTStorage.productQuantized(dimensionsPerCode: 8)
        let index = try SearchIndex(path: dir.appendingPathComponent("deferred.m3index").path, model: model, options: IndexOptions(maxLength: 48, overlap: 8, colbertStorage: pq, denseStorage: .f32))
        let reference = try SearchIndex(path: dir.appendingPathComponent("deferred-f16.m3index").path, model: model, options: IndexOptions(maxLength: 48, overlap: 8, colbertStorage: .float16, denseStorage: .f32))
        func blobs(_ i: SearchIndex) throws -> [String: Data] {
            var out: [String: Data] = [:]
            for c in try storedChunks(atPath: i.path) { out["\(c.documentPath)#\(c.ordinal)"] = c.colbert }
            return out
        }
        index.codebookMinimumRows = 1_000_000
        try index.add(Array(docs[0..<2]))
        try reference.add(Array(docs[0..<2]))
        XCTAssertNil(try index.store.codebook(name: "colbert"))
        XCTAssertEqual(try blobs(index), try blobs(reference), "float16 rows while waiting")
        XCTAssertEqual(try index.check().problems, [])
        for query in ["the with statement", "exception handling"] {
            let got = try index.search(query, options: SearchOptions(k: 5, groupByDocument: false)).results
            let want = try reference.search(query, options: SearchOptions(k: 5, groupByDocument: false)).results
            XCTAssertEqual(got.map(\.chunkID), want.map(\.chunkID))
            XCTAssertEqual(got.map(\.colbert), want.map(\.colbert))
        }
        let early = try blobs(reference)

        index.codebookMinimumRows = 1
        try index.add(Array(docs[2..<6]))
        let data = try XCTUnwrap(try index.store.codebook(name: "colbert"))
        let codebook = try ProductQuantizer(serialized: Array(data))
        let stored = try blobs(index)
        XCTAssertGreaterThan(early.count, 10)
        for (key, f16) in early {
            let rows = try XCTUnwrap(f16.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: .float16) })
            XCTAssertEqual(stored[key], VectorCoding.encodeColBERT(rows, storage: pq, codebook: codebook), key)
        }
        for (key, blob) in stored { XCTAssertEqual(blob.count % (d / 8), 0, key) }
        XCTAssertLessThan(stored.values.reduce(0) { $0 + $1.count } * 2, try blobs(reference).values.reduce(0) { $0 + $1.count })
        XCTAssertEqual(try index.check().problems, [])
        let reopened = try SearchIndex(path: dir.appendingPathComponent("deferred.m3index").path, model: model, options: .existing())
        XCTAssertEqual(try reopened.check().problems, [])
        XCTAssertFalse(try reopened.search("exception handling", options: SearchOptions(k: 3)).results.isEmpty)
    }

    /// An index of each storage: its search returns what brute-force fused scoring over the
    /// vectors it stores (decoded independently, scored with the model's scorers) returns.
    func testIndexOfEachStorageMatchesBruteForceOverItsStoredVectors() throws {
        let model = try SearchEngineTests.model()
        let d = model.config.hiddenSize
        let docs = try corpusDocuments(6)
        let configs: [(ColBERTStorage, DenseStorage)] = [(.float16, .f32), (.int8, .int8), (.binary, .f16),
                                                          (.productQuantized(dimensionsPerCode: 8), .f32),
                                                          (.productQuantized(dimensionsPerCode: 4), .int8),
                                                          (.productQuantized(dimensionsPerCode: 2), .int8)]
        let queries = ["the with statement", "exception handling", "integer division", "names and binding"]
        for (cs, ds) in configs {
            let path = dir.appendingPathComponent("\(cs)-\(ds).m3index").path
            let index = try SearchIndex(path: path, model: model, options: IndexOptions(maxLength: 48, overlap: 8, colbertStorage: cs, denseStorage: ds))
            index.codebookMinimumRows = 0  // train on this first batch (the tiny corpus is below the default)
            try index.add(docs)
            XCTAssertGreaterThan(index.chunkCount, 50)
            XCTAssertEqual(try index.check().problems, [])
            var codebook = try IndexStore(path: path, readOnly: true).codebook(name: "colbert").map { try ProductQuantizer(serialized: Array($0)) }
            XCTAssertEqual(codebook != nil, cs.needsCodebook)
            // PQ rows of 2 or 4 values per code are scored in bfloat16: query and centroids
            // rounded to it (each value to the nearer of the two bfloat16 neighbours), then
            // multiplied exactly, so the brute force decodes with the rounded centroids.
            let scoresInBFloat16 = codebook.map { !$0.scoresThroughTable } ?? false
            let toBFloat16 = { (x: Float) -> Float in
                let low = Float(bitPattern: x.bitPattern & 0xFFFF_0000), high = Float(bitPattern: (x.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
                let dl = abs(Double(x) - Double(low)), dh = abs(Double(high) - Double(x))
                return dl < dh || (dl == dh && (low.bitPattern >> 16) & 1 == 0) ? low : high
            }
            if scoresInBFloat16, let pq = codebook {
                codebook = try ProductQuantizer(dimension: pq.dimension, subspaces: pq.subspaces, centroids: pq.centroids.map(toBFloat16))
            }
            // The stored vectors, decoded here.
            var stored: [(id: Int64, dense: [Float], sparse: SparseVector, colbert: MultiVector)] = []
            for c in try storedChunks(atPath: path) {
                let dense = c.dense.withUnsafeBytes { raw -> [Float] in
                    // Independent decode of the dense layouts, then unit length.
                    var v: [Float]
                    switch ds {
                    case .f32: v = (0..<d).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                    case .f16: v = (0..<d).map { Float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: Float16.self)) }
                    case .int8:
                        let scale = raw.loadUnaligned(fromByteOffset: 0, as: Float.self)
                        v = (0..<d).map { scale * Float(Int8(bitPattern: raw[4 + $0])) }
                        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                        v = v.map { $0 / norm }
                    }
                    if ds == .f16 { let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); v = v.map { $0 / norm } }
                    return v
                }
                stored.append((c.id, dense, c.sparse.withUnsafeBytes { VectorCoding.decodeSparse($0)! },
                               c.colbert.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: cs, codebook: codebook)! }))
            }
            XCTAssertEqual(stored.count, index.chunkCount)
            for text in queries {
                let q = try model.encode([text], options: EncodeOptions(maxLength: 512))[0]
                let queryRows = scoresInBFloat16 ? MultiVector(dimension: d, values: q.colbert!.values.map(toBFloat16)) : q.colbert!
                let brute = stored.map { c -> (Int64, Float, Float) in
                    let colbert = Scores.colbert(queryRows, c.colbert)
                    let fused = (0.4 * Scores.dense(q.dense!, c.dense) + 0.3 * Scores.sparse(q.sparse!, c.sparse) + 0.3 * colbert) / 1.0
                    return (c.id, fused, colbert)
                }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
                let options = SearchOptions(k: 10, weights: FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0.3), groupByDocument: false)
                let engine = try index.exhaustiveSearch(encoded: q, options: options)
                XCTAssertEqual(engine.count, 10)
                // Scores at each rank agree (near-ties may swap places, their scores cannot differ).
                for (r, b) in zip(engine, brute.prefix(10)) { XCTAssertEqual(r.score, b.1, accuracy: 2e-5, "\(cs)/\(ds) \(text)") }
                let byID = Dictionary(uniqueKeysWithValues: brute.map { ($0.0, $0.2) })
                for r in engine { XCTAssertEqual(r.colbert!, byID[r.chunkID]!, accuracy: 2e-5, "\(cs)/\(ds) \(text)") }
                // The candidate path finds the same top 10 here (every chunk is a candidate).
                var wide = options
                wide.candidates = 10_000
                XCTAssertEqual(Set(try index.search(encoded: q, options: wide).results.map(\.chunkID)), Set(engine.map(\.chunkID)),
                               "\(cs)/\(ds) \(text)")
            }
        }
    }

    func testSettingsAreRecordedAndAMismatchIsRefused() throws {
        let model = try SearchEngineTests.model()
        let path = dir.appendingPathComponent("s.m3index").path
        do {
            let index = try SearchIndex(path: path, model: model, options: IndexOptions(maxLength: 48, colbertStorage: .int8, denseStorage: .f16, colbertPruning: .nearDuplicates(threshold: 0.9)))
            try index.add(try corpusDocuments(1, characters: 600))
        }
        let reopened = try SearchIndex(path: path, model: model, options: .existing())
        XCTAssertEqual(reopened.settings.colbertStorage, .int8)
        XCTAssertEqual(reopened.settings.denseStorage, .f16)
        XCTAssertEqual(reopened.settings.colbertPruning, .nearDuplicates(threshold: 0.9))
        XCTAssertEqual(try IndexInfo.read(path: path).settings.colbertStorage, .int8)
        XCTAssertThrowsError(try SearchIndex(path: path, model: model, options: IndexOptions(colbertStorage: .binary))) { error in
            guard let e = error as? M3SearchError, e.kind == .incompatible, let mismatch = e.underlying as? IndexSettings.Mismatch else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(mismatch, IndexSettings.Mismatch(path: path, setting: .colbertStorage, recorded: "int8", requested: "binary"))
            XCTAssertTrue(e.message.contains("ColBERT storage int8, not binary"), e.message)
        }
        XCTAssertThrowsError(try SearchIndex(path: path, model: model, options: IndexOptions(denseStorage: .int8)))
        XCTAssertNoThrow(try SearchIndex(path: path, model: model, options: IndexOptions(colbertStorage: .int8, denseStorage: .f16)))
        // Settings written before the storage keys existed read as float16 / float32 / no pruning.
        let old = #"{"modelID":"x","dimension":16,"maxLength":512,"overlap":64,"pooling":"cls","normalize":true,"hnswM":16,"hnswEfConstruction":200}"#
        let decoded = try JSONDecoder().decode(IndexSettings.self, from: Data(old.utf8))
        XCTAssertEqual(decoded.colbertStorage, .float16)
        XCTAssertEqual(decoded.denseStorage, .f32)
        XCTAssertEqual(decoded.colbertPruning, ColBERTPruning.none)
        // A dimension the codec cannot cut is refused before anything is written.
        XCTAssertThrowsError(try SearchIndex(path: dir.appendingPathComponent("x.m3index").path, model: model, options: IndexOptions(colbertStorage: .productQuantized(dimensionsPerCode: 64))))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.m3index").path))
    }

    func testNearDuplicatePruningDropsRowsLikeTheirPredecessor() {
        let d = 4
        let rows: [[Float]] = [[1, 0, 0, 0], [0.99, 0.141, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
        let m = MultiVector(dimension: d, values: rows.flatMap { $0 })
        let kept = ColBERTPruning.nearDuplicates(threshold: 0.95).apply(m)
        XCTAssertEqual(kept.values, [rows[0], rows[2], rows[4], rows[5]].flatMap { $0 })
        XCTAssertEqual(ColBERTPruning.none.apply(m), m)
        XCTAssertEqual(ColBERTPruning("near-duplicates:0.8"), .nearDuplicates(threshold: 0.8))
        XCTAssertNil(ColBERTPruning("near-duplicates:1.5"))
        XCTAssertEqual(ColBERTStorage("pq16"), .productQuantized(dimensionsPerCode: 16))
        XCTAssertEqual(ColBERTStorage("pq2"), .productQuantized(dimensionsPerCode: 2))
        XCTAssertNil(ColBERTStorage("pq15"))
        XCTAssertNil(ColBERTStorage("pq1"))
    }

    /// `IndexInfo` against sums computed from what was added: rows × bytes per row, chunks ×
    /// dense bytes, the codebook's serialised size, and the file size on disk.
    func testInfoSizesEqualIndependentSums() throws {
        let model = try SearchEngineTests.model()
        let d = model.config.hiddenSize
        var rng = RNG(state: 3)
        for (cs, ds) in [(ColBERTStorage.productQuantized(dimensionsPerCode: 4), DenseStorage.int8), (.float16, .f32)] {
            let path = dir.appendingPathComponent("info-\(cs).m3index").path
            let index = try SearchIndex(path: path, model: model, options: IndexOptions(colbertStorage: cs, denseStorage: ds))
            index.codebookMinimumRows = 0
            var rows = 0, tokens = 0, chunks = 0
            var docs: [(id: String, chunks: [SearchIndex.EncodedChunk])] = []
            for doc in 0..<20 {
                var list: [SearchIndex.EncodedChunk] = []
                for c in 0..<(1 + doc % 3) {
                    let n = 3 + (doc * 7 + c) % 40
                    rows += n; tokens += n + 1; chunks += 1
                    let e = Embedding(tokenIDs: [], dense: rng.unitRows(1, d), sparse: SparseVector(ids: [Int32(doc), 100], weights: [0.5, 0.25]),
                                      colbert: MultiVector(dimension: d, values: rng.unitRows(n, d)))
                    list.append(.init(text: "document \(doc) chunk \(c)", tokenCount: n + 1, embedding: e))
                }
                docs.append((id: "d\(doc)", chunks: list))
            }
            try index.add(encoded: docs)
            try index.store.checkpoint()
            let info = try IndexInfo.read(path: path)
            let codebookBytes = cs.needsCodebook ? 20 + d * 256 * 4 : 0
            XCTAssertEqual(info.chunks, chunks)
            XCTAssertEqual(info.documents, 20)
            XCTAssertEqual(info.tokens, Int64(tokens))
            XCTAssertEqual(info.colbertRows, Int64(rows))
            XCTAssertEqual(info.components.dense, Int64(chunks * ds.bytes(dimension: d)))
            if info.measuredInPages {
                // The codebook counts in whole pages.
                XCTAssertGreaterThanOrEqual(info.components.colbert, Int64(rows * cs.bytesPerRow(dimension: d) + codebookBytes))
                XCTAssertLessThan(info.components.colbert, Int64(rows * cs.bytesPerRow(dimension: d) + codebookBytes + 8192))
            } else {
                XCTAssertEqual(info.components.colbert, Int64(rows * cs.bytesPerRow(dimension: d) + codebookBytes))
            }
            let fileSize = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int64
            XCTAssertEqual(info.fileBytes, fileSize)
            let c = info.components
            XCTAssertEqual(c.documentsAndText + c.dense + c.hnswGraph + c.sparse + c.colbert + c.other, fileSize)
            XCTAssertGreaterThan(c.hnswGraph, 0)
            XCTAssertGreaterThanOrEqual(c.sparse, Int64(chunks * 16))
        }
    }
}

/// The command line: storage options at creation, a clear error for a different one later,
/// and `info --json` whose components add up to the file.
final class StorageCommandLineTests: XCTestCase {
    func testIndexStorageOptionsAndInfo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-storage-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("docs"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = String(try String(contentsOfFile: fixture("corpus/assert.txt"), encoding: .utf8).prefix(1500))
        try Data(text.utf8).write(to: dir.appendingPathComponent("docs/a.txt"))
        let index = dir.appendingPathComponent("i.m3index").path
        let model = fixture("models/tiny-safetensors")
        var run = try runM3Search(["index", dir.appendingPathComponent("docs").path, "--index", index, "--model", model,
                                   "--max-length", "48", "--overlap", "8", "--colbert-storage", "binary", "--dense-storage", "f16"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        run = try runM3Search(["index", dir.appendingPathComponent("docs").path, "--index", index, "--model", model,
                               "--colbert-storage", "int8"], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("--colbert-storage binary, not int8"), run.stderr)
        run = try runM3Search(["index", dir.path, "--index", index, "--model", model, "--colbert-storage", "pq7"], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("pq16"), run.stderr)
        run = try runM3Search(["info", "--index", index, "--json"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        let info = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let settings = info["settings"] as! [String: Any]
        XCTAssertEqual(settings["colbertStorage"] as? String, "binary")
        XCTAssertEqual(settings["denseStorage"] as? String, "f16")
        let components = info["components"] as! [String: Int]
        let file = try FileManager.default.attributesOfItem(atPath: index)[.size] as! Int
        XCTAssertEqual(components.values.reduce(0, +), file)
        let chunks = info["chunks"] as! Int, rows = info["colbertRows"] as! Int
        XCTAssertGreaterThan(chunks, 0)
        XCTAssertEqual(components["dense"], chunks * 2 * 16)
        XCTAssertEqual(info["bytesPerChunk"] as! Double, Double(file) / Double(chunks), accuracy: 1e-6)
        XCTAssertGreaterThanOrEqual(components["colbert"]!, rows * (4 + 16 / 8))
        // The measured ranking cost (StorageCost) of binary ColBERT and f16 dense.
        let cost = info["storageCost"] as! [String: Any]
        XCTAssertEqual((cost["colbert"] as? [String: Any])?["codec"] as? String, "binary", "\(cost)")
        XCTAssertEqual((cost["dense"] as? [String: Any])?["worst_ndcg@10_loss"] as? Double, StorageCost.dense(.f16)!.worstLoss, "\(cost)")
        XCTAssertEqual(cost["source"] as? String, StorageCost.source)
        run = try runM3Search(["info", "--index", index], stdin: "")
        XCTAssertTrue(run.stdout.contains(StorageCost.colbert(.binary)!.summary), run.stdout)
        // An index with the default storage: info states the int8 rows of the table.
        let defaultIndex = dir.appendingPathComponent("d.m3index").path
        run = try runM3Search(["index", dir.appendingPathComponent("docs").path, "--index", defaultIndex, "--model", model,
                               "--max-length", "48", "--overlap", "8"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        run = try runM3Search(["info", "--index", defaultIndex, "--json"], stdin: "")
        let defaultCost = (try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any])["storageCost"] as! [String: Any]
        let colbertCost = defaultCost["colbert"] as! [String: Any]
        XCTAssertEqual(colbertCost["codec"] as? String, "int8")
        XCTAssertEqual(colbertCost["worst_ndcg@10_loss"] as? Double, StorageCost.colbert(.int8)!.worstLoss)
        XCTAssertEqual((defaultCost["dense"] as! [String: Any])["codec"] as? String, "int8")
        run = try runM3Search(["info", "--index", defaultIndex], stdin: "")
        XCTAssertTrue(run.stdout.contains(StorageCost.colbert(.int8)!.summary), run.stdout)
        run = try runM3Search(["info", "--index", dir.appendingPathComponent("none.m3index").path], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("none.m3index"), run.stderr)
    }
}
