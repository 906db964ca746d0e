import Foundation
import M3Model
import M3TestSupport
import XCTest

/// The encoder against FlagEmbedding's outputs for the committed tiny models
/// (Fixtures/reference/*.json, made by Fixtures/generate_references.py).
final class ParityTests: XCTestCase {
    static let tolerance: Float = 1e-4

    func testTinySafetensorsMatchesFlagEmbedding() throws {
        try checkParity(model: "tiny-safetensors")
    }

    func testTinyPytorchBinMatchesFlagEmbedding() throws {
        try checkParity(model: "tiny-bin")
    }

    /// Texts batched together give the same outputs as each text alone.
    func testBatchingDoesNotChangeOutputs() throws {
        let model = try BGEM3(folder: Fixtures.model("tiny-safetensors"))
        let reference = try Fixtures.reference("tiny-safetensors")
        let texts = reference.encodings[0].items.map(\.text)
        let together = try model.encode(texts, options: EncodeOptions(maxLength: 512, batchTokens: 100_000))
        let alone = try texts.map { try model.encode([$0], options: EncodeOptions(maxLength: 512))[0] }
        for (a, b) in zip(together, alone) {
            XCTAssertEqual(a.tokenIDs, b.tokenIDs)
            XCTAssertLessThanOrEqual(maxAbsDiff(a.dense!, b.dense!), 1e-5)
            XCTAssertEqual(a.sparse!.ids, b.sparse!.ids)
            XCTAssertLessThanOrEqual(maxAbsDiff(a.colbert!.values, b.colbert!.values), 1e-5)
        }
    }

    /// Heads not asked for are not computed.
    func testOutputSelection() throws {
        let model = try BGEM3(folder: Fixtures.model("tiny-bin"))
        let e = try model.encode(["only the sparse head"], options: EncodeOptions(outputs: .sparse))[0]
        XCTAssertNil(e.dense)
        XCTAssertNil(e.colbert)
        XCTAssertNotNil(e.sparse)
    }

    func checkParity(model name: String) throws {
        let model = try BGEM3(folder: Fixtures.model(name))
        let reference = try Fixtures.reference(name)
        var worst: [String: Float] = [:]
        func note(_ key: String, _ v: Float) { worst[key] = max(worst[key] ?? 0, v) }

        for block in reference.encodings {
            let texts = block.items.map(\.text)
            let outputs = try model.encode(texts, options: EncodeOptions(maxLength: block.maxLength))
            for (item, out) in zip(block.items, outputs) {
                let label = "\(name) max_length \(block.maxLength) text \(item.name)"
                XCTAssertEqual(out.tokenIDs, item.inputIDs, "input_ids differ for \(label)")
                guard out.tokenIDs == item.inputIDs else { continue }
                note("dense", maxAbsDiff(out.dense!, item.dense))
                let sparse = out.sparse!
                let ours = Dictionary(uniqueKeysWithValues: zip(sparse.ids, sparse.weights))
                // Same key set, but for weights within float noise of relu's 0 boundary: a
                // key on one side only means weight 0 on the other, so its |Δ| is its weight.
                for id in Set(ours.keys).symmetricDifference(item.sparse.keys) {
                    let w = ours[id] ?? item.sparse[id]!
                    XCTAssertLessThanOrEqual(w, 1e-5, "sparse key \(id) (weight \(w)) on one side only for \(label)")
                }
                for id in Set(ours.keys).union(item.sparse.keys) {
                    note("sparse", abs((ours[id] ?? 0) - (item.sparse[id] ?? 0)))
                }
                let colbert = out.colbert!
                XCTAssertEqual(colbert.count, item.colbert.count, "ColBERT vector count differs for \(label)")
                for (r, row) in item.colbert.enumerated() where r < colbert.count {
                    note("colbert", maxAbsDiff(Array(colbert[r]), row))
                }
            }
        }
        // Scores, each text encoded on its own at the reference max length.
        let w = reference.scoreWeights
        let options = EncodeOptions(maxLength: reference.scoreMaxLength)
        for pair in reference.scores {
            let e = try model.encode([pair.query, pair.passage], options: options)
            let (q, p) = (e[0], e[1])
            let dense = Scores.dense(q.dense!, p.dense!)
            let sparse = Scores.sparse(q.sparse!, p.sparse!)
            let colbert = Scores.colbert(q.colbert!, p.colbert!)
            note("score.dense", abs(dense - pair.dense))
            note("score.sparse", abs(sparse - pair.sparse))
            note("score.colbert", abs(colbert - pair.colbert))
            note("score.sparse+dense", abs(Scores.fused([dense, sparse], weights: [w[0], w[1]]) - pair.sparseDense))
            note("score.colbert+sparse+dense", abs(Scores.fused([dense, sparse, colbert], weights: w) - pair.all))
        }
        print("parity \(name): max |Δ| " + worst.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        for key in ["dense", "sparse", "colbert", "score.dense", "score.sparse", "score.colbert",
                    "score.sparse+dense", "score.colbert+sparse+dense"] {
            XCTAssertNotNil(worst[key], "\(name): nothing compared for \(key)")
            XCTAssertLessThanOrEqual(worst[key] ?? .infinity, Self.tolerance, "\(name): max |Δ| of \(key)")
        }
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Paths to, and readers of, the committed fixtures.
enum Fixtures {
    /// The Fixtures folder. Also installs the test run's model cache (`TestModelCache`):
    /// loads of fixture models never write into ~/.cache.
    static let root: URL = {
        TestModelCache.install()
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url.appendingPathComponent("Fixtures")
    }()

    static func model(_ name: String) -> String { root.appendingPathComponent("models/\(name)").path }

    struct Reference: Decodable {
        struct Item: Decodable {
            let name: String
            let text: String
            let inputIDs: [Int32]
            let dense: [Float]
            let sparse: [Int32: Float]
            let colbert: [[Float]]
            enum CodingKeys: String, CodingKey { case name, text, inputIDs = "input_ids", dense, sparse, colbert }
            init(from decoder: Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                name = try c.decode(String.self, forKey: .name)
                text = try c.decode(String.self, forKey: .text)
                inputIDs = try c.decode([Int32].self, forKey: .inputIDs)
                dense = try c.decode([Float].self, forKey: .dense)
                let raw = try c.decode([String: Float].self, forKey: .sparse)
                sparse = Dictionary(uniqueKeysWithValues: raw.map { (Int32($0.key)!, $0.value) })
                colbert = try c.decode([[Float]].self, forKey: .colbert)
            }
        }
        struct Block: Decodable {
            let maxLength: Int
            let items: [Item]
            enum CodingKeys: String, CodingKey { case maxLength = "max_length", items }
        }
        struct Pair: Decodable {
            let query: String, passage: String
            let dense: Float, sparse: Float, colbert: Float, sparseDense: Float, all: Float
            enum CodingKeys: String, CodingKey {
                case query, passage, dense, sparse, colbert
                case sparseDense = "sparse+dense", all = "colbert+sparse+dense"
            }
        }
        let encodings: [Block]
        let scoreWeights: [Float]
        let scoreMaxLength: Int
        let scores: [Pair]
        enum CodingKeys: String, CodingKey {
            case encodings, scores, scoreWeights = "score_weights", scoreMaxLength = "score_max_length"
        }
    }

    static func reference(_ name: String) throws -> Reference {
        let data = try Data(contentsOf: root.appendingPathComponent("reference/\(name).json"))
        return try JSONDecoder().decode(Reference.self, from: data)
    }
}

/// Where the model is looked for: explicit, $M3SEARCH_MODEL, the Hugging Face cache.
final class ModelLookupTests: XCTestCase {
    func testLookupOrder() throws {
        XCTAssertEqual(try BGEM3.locate(explicit: "/x", environment: ["M3SEARCH_MODEL": "/y"]), "/x")
        XCTAssertEqual(try BGEM3.locate(explicit: nil, environment: ["M3SEARCH_MODEL": "/y"]), "/y")

        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("m3-hub-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: hub) }
        let repo = hub.appendingPathComponent("models--BAAI--bge-m3")
        let snapshot = repo.appendingPathComponent("snapshots/abc123")
        try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: snapshot.appendingPathComponent("config.json"))
        try FileManager.default.createDirectory(at: repo.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try Data("abc123\n".utf8).write(to: repo.appendingPathComponent("refs/main"))
        XCTAssertEqual(try BGEM3.locate(explicit: nil, environment: ["HF_HUB_CACHE": hub.path]), snapshot.path)
        XCTAssertEqual(try BGEM3.locate(explicit: nil, environment: ["HF_HOME": hub.deletingLastPathComponent().path,
                                                                     "HF_HUB_CACHE": hub.path]), snapshot.path)
    }

    func testNotFoundSaysHowToDownload() {
        XCTAssertThrowsError(try BGEM3.locate(explicit: nil, environment: ["HOME": "/nonexistent-home"])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("BAAI/bge-m3"), text)
            XCTAssertTrue(text.contains("M3SEARCH_MODEL"), text)
        }
    }
}
