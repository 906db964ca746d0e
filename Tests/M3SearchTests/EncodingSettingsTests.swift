import Foundation
@testable import M3Search
import M3Index
import M3Store
import XCTest

/// Encoding settings fixed at index creation (issue 12 items 4–5, issue 18 item 1):
/// pooling, normalisation and prefixes reach the stored vectors and the query vectors
/// exactly as FlagEmbedding computes them (Fixtures/reference/tiny-bin-pooling.json, from
/// Fixtures/generate_pooling_references.py); the precision is recorded; a model with fewer
/// positions than the chunk length gets chunks it can take whole.
final class EncodingSettingsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-encoding-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    struct Reference: Decodable {
        struct Item: Decodable { let text: String; let input_ids: [Int32]; let dense: [Float]; let colbert: [[Float]] }
        struct Setting: Decodable { let pooling: String; let normalize: Bool; let items: [Item] }
        let settings: [Setting]

        func item(_ pooling: Pooling, normalize: Bool, _ text: String) throws -> Item {
            let s = try XCTUnwrap(settings.first { $0.pooling == pooling.rawValue && $0.normalize == normalize })
            return try XCTUnwrap(s.items.first { $0.text == text })
        }
    }

    lazy var reference: Reference = {
        try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: fixture("reference/tiny-bin-pooling.json"))))
    }()
    lazy var model: BGEM3 = try! BGEM3(folder: fixture("models/tiny-bin"))

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    /// Every stored chunk: its record and float32 dense vector as stored (not rescaled).
    func storedChunks(_ index: SearchIndex) throws -> [(chunk: ChunkRecord, dense: [Float])] {
        var out: [(ChunkRecord, [Float])] = []
        try index.store.forEachChunk { row in
            let v = VectorCoding.decodeDense(row.dense, dimension: index.settings.dimension, storage: index.settings.denseStorage)
            out.append((row.chunk, v ?? []))
        }
        return out
    }

    /// The query embedding the index computes for a query text.
    func queryEmbedding(_ index: SearchIndex, _ text: String) throws -> (ids: [Int32], embedding: Embedding) {
        let prepared = try index.reader.prepare(text, options: SearchOptions())
        return (prepared.tokenIDs, try index.reader.encode([prepared])[0])
    }

    // MARK: - Pooling and normalisation

    func testPoolingAndNormalisationReachStoredAndQueryVectorsAsFlagEmbeddingComputesThem() throws {
        let text = "The quick brown fox jumps over the lazy dog."
        for (pooling, normalize) in [(Pooling.cls, true), (.mean, true), (.mean, false), (.cls, false)] {
            let ref = try reference.item(pooling, normalize: normalize, text)
            let file = path("\(pooling)-\(normalize).m3index")
            let options = IndexOptions(maxLength: 64, overlap: 8, pooling: pooling, normalize: normalize,
                                       colbertStorage: .float16, denseStorage: .f32)
            var index = try SearchIndex(path: file, model: model, options: options)
            try index.add([DocumentInput(id: "fox.txt", text: text)])
            let tag = "\(pooling) normalize \(normalize)"

            // Document side: the stored vector is FlagEmbedding's.
            let stored = try storedChunks(index)
            XCTAssertEqual(stored.count, 1)
            XCTAssertLessThan(maxAbs(stored[0].dense, ref.dense), 1e-5, tag)
            // Query side: the same text as a query gets the same vector.
            let (ids, q) = try queryEmbedding(index, text)
            XCTAssertEqual(ids, ref.input_ids, tag)
            XCTAssertLessThan(maxAbs(q.dense ?? [], ref.dense), 1e-5, tag)
            XCTAssertEqual(q.colbert?.count, ref.colbert.count, tag)
            if let c = q.colbert {
                for r in 0 ..< c.count { XCTAssertLessThan(maxAbs(Array(c[r]), ref.colbert[r]), 1e-5, "\(tag) ColBERT row \(r)") }
            }
            // And `encode --pooling` (the library's encode) agrees with both.
            let encoded = try model.encode([text], options: EncodeOptions(pooling: pooling, normalize: normalize))[0]
            XCTAssertLessThan(maxAbs(encoded.dense ?? [], ref.dense), 1e-5, tag)

            // The dense score is the inner product of the vectors as computed by FlagEmbedding
            // (‖v‖² unnormalised: the graph's unit direction times the stored norm), in the
            // open index and in one reopened from the file.
            let expected = dot(ref.dense, ref.dense)
            if !normalize { XCTAssertGreaterThan(abs(expected - 1), 0.5, "the reference is not unit length") }
            for reopened in [false, true] {
                if reopened { index = try SearchIndex(path: file, model: model, options: .existing()) }
                XCTAssertEqual(index.settings.pooling, pooling)
                XCTAssertEqual(index.settings.normalize, normalize)
                let hit = try XCTUnwrap(index.search(text, options: SearchOptions(k: 1, mode: .dense)).results.first)
                XCTAssertEqual(Double(hit.dense ?? .nan), Double(expected), accuracy: 1e-4, "\(tag) reopened \(reopened)")
            }
        }
    }

    func testUnnormalisedIndexWithInt8DenseStorageBuildsAndScoresInnerProducts() throws {
        // The default int8 dense storage and its compact int8 graph assume unit vectors:
        // without normalisation the graph holds float32 directions instead.
        let texts = ["The quick brown fox jumps over the lazy dog.", "Москва — столица России.",
                     "Lighthouses guide ships along the rocky coast at night.", "Volcanoes erupt lava and ash."]
        let index = try SearchIndex(path: path("raw.m3index"), model: model,
                                    options: IndexOptions(maxLength: 64, overlap: 8, pooling: .mean, normalize: false))
        XCTAssertEqual(index.settings.denseStorage, .int8)
        XCTAssertEqual(index.hnsw.encoding, .float32)
        try index.add(texts.enumerated().map { DocumentInput(id: "d\($0.offset)", text: $0.element) })
        XCTAssertTrue(try index.check().problems.isEmpty)

        // Exact inner products against FlagEmbedding's unnormalised mean-pooled vectors.
        let q = try reference.item(.mean, normalize: false, texts[0])
        let results = try index.search(texts[0], options: SearchOptions(k: 4, mode: .dense)).results
        XCTAssertEqual(results.count, 4)
        for r in results {
            let text = try XCTUnwrap(texts.first { $0 == r.text })
            let docVector = try model.encode([text], options: EncodeOptions(pooling: .mean, normalize: false))[0].dense!
            let exact = dot(q.dense, docVector)
            XCTAssertEqual(Double(r.dense ?? .nan), Double(exact), accuracy: 0.02 * Double(abs(exact)) + 1e-3, r.path)
        }
        // The brute-force oracle ranks the same way.
        let encoded = try queryEmbedding(index, texts[0]).embedding
        let oracle = try index.exhaustiveSearch(encoded: encoded, options: SearchOptions(k: 4, mode: .dense))
        XCTAssertEqual(oracle.map(\.path), results.map(\.path))
    }

    // MARK: - Prefixes

    func testPrefixesAreAppliedAndRangesReferToTheDocumentsOwnText() throws {
        let passage = "The with statement wraps a block in the methods of a context manager."
        let query = "how does the with statement manage resources"
        let index = try SearchIndex(path: path("e5.m3index"), model: model,
                                    options: IndexOptions(maxLength: 64, overlap: 8, colbertStorage: .float16, denseStorage: .f32,
                                                          queryPrefix: "query: ", passagePrefix: "passage: "))
        try index.add([DocumentInput(id: "with.txt", text: passage)])

        // The stored vector is FlagEmbedding's for "passage: " + text, the query's for "query: " + text.
        let refPassage = try reference.item(.cls, normalize: true, "passage: " + passage)
        let refQuery = try reference.item(.cls, normalize: true, "query: " + query)
        let stored = try storedChunks(index)
        XCTAssertEqual(stored.count, 1)
        XCTAssertLessThan(maxAbs(stored[0].dense, refPassage.dense), 1e-5)
        XCTAssertEqual(stored[0].chunk.tokenCount, refPassage.input_ids.count)
        let (ids, q) = try queryEmbedding(index, query)
        XCTAssertEqual(ids, refQuery.input_ids)
        XCTAssertLessThan(maxAbs(q.dense ?? [], refQuery.dense), 1e-5)
        // `eval` and `tune` (the candidate pool) encode the query the same way.
        let pool = try index.candidatePool(for: EvaluationSet(queries: [.init(id: "q", text: query)], qrels: ["q": ["with.txt": 1]]))
        let pooled = try XCTUnwrap(pool.queries.first?.chunks.first?.dense)
        XCTAssertEqual(Double(pooled), Double(dot(refQuery.dense, refPassage.dense)), accuracy: 1e-5)
        // The chunk is the document's text, not the prefix's.
        XCTAssertEqual(stored[0].chunk.text, passage)
        XCTAssertEqual([stored[0].chunk.charStart, stored[0].chunk.charEnd], [0, passage.unicodeScalars.count])

        // Several chunks: each starts with the prefix's tokens, and its range and text are
        // those of the document (the same windows a prefix-less chunker maps, shifted by
        // nothing: the text it covers is a slice of the document).
        let long = (1 ... 30).map { "Sentence \($0) about résumés and naïve cafés." }.joined(separator: " ")
        try index.add([DocumentInput(id: "long.txt", text: long)])
        let prefixIDs = Array(refPassage.input_ids[0 ..< 3])  // <s> ▁passage :
        let scalars = Array(long.unicodeScalars)
        let chunks = try storedChunks(index).map(\.chunk).filter { $0.documentID != stored[0].chunk.documentID }
        XCTAssertGreaterThan(chunks.count, 2)
        XCTAssertEqual(chunks.first?.charStart, 0)
        XCTAssertEqual(chunks.last?.charEnd, scalars.count)
        for c in chunks {
            XCTAssertLessThanOrEqual(c.tokenCount, 64)
            XCTAssertEqual(c.text, String(String.UnicodeScalarView(scalars[c.charStart ..< c.charEnd])))
            XCTAssertFalse(c.text.contains("passage"))
        }
        let firstTokens = Chunker.chunks(of: long, tokenizer: model.tokenizer, maxLength: 64, overlap: 8, prefix: "passage: ")
        XCTAssertEqual(firstTokens.count, chunks.count)
        for c in firstTokens { XCTAssertEqual(Array(c.tokenIDs.prefix(3)), prefixIDs) }

        // Recorded, and shown by `info`.
        let reopened = try SearchIndex(path: index.path, model: model, options: .existing(readOnly: true))
        XCTAssertEqual([reopened.settings.queryPrefix, reopened.settings.passagePrefix], ["query: ", "passage: "])
        XCTAssertEqual(try IndexInfo.read(path: index.path).settings.passagePrefix, "passage: ")
    }

    // MARK: - Precision, old indexes, position limits

    func testPrecisionIsRecordedAndAnotherPrecisionGetsANote() throws {
        let file = path("p.m3index")
        let f32 = model
        let index = try SearchIndex(path: file, model: f32, options: IndexOptions(maxLength: 64, overlap: 8))
        try index.add([DocumentInput(id: "a", text: "Lighthouses guide ships.")])
        XCTAssertEqual(index.settings.precision, .float32)
        XCTAssertEqual(try IndexStore(path: file, readOnly: true).settings().precision, "f32")
        XCTAssertEqual(index.notes, [])
        for asked in [Precision.bfloat16, .int8] {
            let other = try BGEM3(folder: fixture("models/tiny-bin"), precision: asked)
            let opened = try SearchIndex(path: file, model: other, options: .existing(readOnly: true))
            if other.precision == .float32 {
                XCTAssertEqual(opened.notes, [], "this CPU runs \(asked) as float32")
            } else {
                XCTAssertEqual(opened.notes.count, 1)
                XCTAssertTrue(opened.notes[0].contains("precision f32") && opened.notes[0].contains("\(other.precision)"), opened.notes[0])
                XCTAssertEqual(try opened.search("ships", options: SearchOptions(k: 1)).results.first?.path, "a")
            }
        }
    }

    func testIndexWithoutTheNewKeysKeepsTheOldBehaviour() throws {
        let file = path("old.m3index")
        try FileManager.default.copyItem(atPath: fixture("indexes/pre-identity-v2.sqlite"), toPath: file)
        let model = try BGEM3(folder: fixture("models/tiny-safetensors"))
        let index = try SearchIndex(path: file, model: model, options: .existing(readOnly: true))
        XCTAssertEqual(index.settings.pooling, .cls)
        XCTAssertTrue(index.settings.normalize)
        XCTAssertEqual([index.settings.queryPrefix, index.settings.passagePrefix], ["", ""])
        XCTAssertNil(index.settings.precision)
        XCTAssertEqual(index.notes, [])
        // Queries are encoded with no prefix: the same ids as the bare tokenizer's.
        let (ids, _) = try queryEmbedding(index, "context managers")
        XCTAssertEqual(ids, model.tokenizer.encode("context managers", maxLength: 512))
        XCTAssertEqual(try index.search("context managers", options: SearchOptions(k: 3)).results.first?.path, "docs/a.txt")
    }

    /// A copy of tiny-safetensors whose config and position table have `positions` rows.
    func shortModel(positions: Int) throws -> String {
        let src = URL(fileURLWithPath: fixture("models/tiny-safetensors"))
        let out = dir.appendingPathComponent("short-model")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: src.path) where name != "config.json" && name != "model.safetensors" {
            try FileManager.default.createSymbolicLink(at: out.appendingPathComponent(name),
                                                       withDestinationURL: src.appendingPathComponent(name).resolvingSymlinksInPath())
        }
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as? [String: Any])
        config["max_position_embeddings"] = positions
        try JSONSerialization.data(withJSONObject: config).write(to: out.appendingPathComponent("config.json"))

        // safetensors: u64 header length, JSON header, data; keep the first rows of the table.
        let data = try Data(contentsOf: src.appendingPathComponent("model.safetensors"))
        let headerLength = Int(data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + headerLength)) as? [String: Any])
        let body = data.subdata(in: 8 + headerLength ..< data.count)
        var newHeader: [String: Any] = [:], newBody = Data()
        for name in header.keys.sorted() {
            guard name != "__metadata__", var t = header[name] as? [String: Any] else { newHeader[name] = header[name]; continue }
            func ints(_ key: String) throws -> [Int] {
                try XCTUnwrap((t[key] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue ?? ($0 as? Int) }, key)
            }
            let offsets = try ints("data_offsets"), shape = try ints("shape")
            var bytes = body.subdata(in: offsets[0] ..< offsets[1])
            if name == "embeddings.position_embeddings.weight" {
                bytes = bytes.prefix(bytes.count / shape[0] * positions)
                t["shape"] = [positions, shape[1]]
            }
            t["data_offsets"] = [newBody.count, newBody.count + bytes.count]
            newBody.append(bytes)
            newHeader[name] = t
        }
        var headerData = try JSONSerialization.data(withJSONObject: newHeader)
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        var file = Data((0 ..< 8).map { UInt8(truncatingIfNeeded: headerData.count >> (8 * $0)) })
        file.append(headerData)
        file.append(newBody)
        try file.write(to: out.appendingPathComponent("model.safetensors"))
        return out.path
    }

    func testModelWithFewerPositionsChunksToItsLimitAndSaysSoOnce() throws {
        let folder = try shortModel(positions: 34)   // 34 − pad 1 − 1 = 32 usable tokens
        let short = try BGEM3(folder: folder)
        XCTAssertEqual(short.config.maxSequenceLength, 32)
        let text = (1 ... 40).map { "Word\($0) goes here." }.joined(separator: " ")
        let index = try SearchIndex(path: path("short.m3index"), model: short, options: IndexOptions(maxLength: 512, overlap: 4))
        XCTAssertEqual(index.notes.count, 1)
        XCTAssertTrue(index.notes[0].contains("32 tokens"), index.notes[0])
        try index.add([DocumentInput(id: "long", text: text)])
        let chunks = try storedChunks(index).map(\.chunk)
        // The whole text is indexed, in chunks the model takes whole.
        let expected = Chunker.chunks(of: text, tokenizer: short.tokenizer, maxLength: 32, overlap: 4)
        XCTAssertGreaterThan(expected.count, 3)
        XCTAssertEqual(chunks.map(\.tokenCount), expected.map(\.tokenIDs.count))
        XCTAssertTrue(chunks.allSatisfy { $0.tokenCount <= 32 })
        XCTAssertEqual(chunks.last?.charEnd, text.unicodeScalars.count)

        // The command line says it once.
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: docs.appendingPathComponent("long.txt"))
        let run = try runM3Search(["index", docs.path, "--index", path("cli.m3index"), "--model", folder], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stderr.components(separatedBy: "max_position_embeddings").count - 1, 1, run.stderr)
    }

    // MARK: - Command line

    func testCommandLineRecordsEncodingSettingsAndRefusesToChangeThem() throws {
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        let passage = "The with statement wraps a block in the methods of a context manager."
        try Data(passage.utf8).write(to: docs.appendingPathComponent("with.txt"))
        let file = path("cli.m3index"), tiny = fixture("models/tiny-bin")
        let settings = ["--pooling", "mean", "--no-normalize", "--query-prefix", "query: ", "--passage-prefix", "passage: "]
        var run = try runM3Search(["index", docs.path, "--index", file, "--model", tiny] + settings, stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)

        run = try runM3Search(["info", "--index", file, "--json"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let s = try XCTUnwrap(info["settings"] as? [String: Any])
        XCTAssertEqual(s["pooling"] as? String, "mean")
        XCTAssertEqual(s["normalize"] as? Bool, false)
        XCTAssertEqual(s["queryPrefix"] as? String, "query: ")
        XCTAssertEqual(s["passagePrefix"] as? String, "passage: ")
        XCTAssertEqual(s["precision"] as? String, "f32")
        run = try runM3Search(["info", "--index", file], stdin: "")
        XCTAssertTrue(run.stdout.contains("pooling mean, not normalised") && run.stdout.contains("passage prefix \"passage: \""), run.stdout)

        // `encode` with the same options gives the stored vector (FlagEmbedding's).
        let ref = try reference.item(.mean, normalize: false, "passage: " + passage)
        run = try runM3Search(["encode", "--model", tiny, "--outputs", "dense"] + settings, stdin: jsonLine(["text": passage]))
        XCTAssertEqual(run.status, 0, run.stderr)
        let line = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertLessThan(maxDiff(line["dense"], ref.dense.map(Double.init)), 1e-5)
        XCTAssertEqual(line["input_ids"] as? [Int], ref.input_ids.map(Int.init))
        // `score`: query and passage prefixed.
        let query = "how does the with statement manage resources"
        let refQuery = try reference.item(.mean, normalize: false, "query: " + query)
        run = try runM3Search(["score", "--model", tiny] + settings, stdin: jsonLine(["query": query, "passage": passage]))
        XCTAssertEqual(run.status, 0, run.stderr)
        let scores = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(scores["dense"] as? Double ?? .nan, Double(dot(refQuery.dense, ref.dense)), accuracy: 1e-4)

        // Another choice on the existing index is refused, naming the option; none given is fine.
        for (option, value) in [("--pooling", "cls"), ("--query-prefix", "q: "), ("--passage-prefix", "")] {
            run = try runM3Search(["index", docs.path, "--index", file, "--model", tiny, option, value], stdin: "")
            XCTAssertNotEqual(run.status, 0, option)
            XCTAssertTrue(run.stderr.contains(option) && run.stderr.contains("fixed when an index is created"), run.stderr)
        }
        run = try runM3Search(["index", docs.path, "--index", file, "--model", tiny], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        // A normalised index refuses --no-normalize.
        let plain = path("plain.m3index")
        run = try runM3Search(["index", docs.path, "--index", plain, "--model", tiny], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        run = try runM3Search(["index", docs.path, "--index", plain, "--model", tiny, "--no-normalize"], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("--no-normalize"), run.stderr)

        // The query's dense score is the inner product of FlagEmbedding's vectors.
        run = try runM3Search(["query", query, "--index", file, "--model", tiny, "--mode", "dense", "--json"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("with.txt"), run.stdout)
    }
}
