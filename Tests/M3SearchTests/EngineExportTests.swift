import Foundation
@testable import M3Model
@testable import M3Search
import M3Store
import XCTest

/// `m3search export --format qdrant|milvus|vespa`: the files hold the index's vectors (checked
/// against the HNSW graph's vectors, the in-memory posting lists and the vectors a document
/// was added with), the documented score formulas computed on an export reproduce m3search's
/// scores, and `--out` is never damaged.
final class EngineExportTests: XCTestCase {
    var dir: URL!
    let model = fixture("models/tiny-safetensors")

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-engines-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// The odd document: an id and text with characters Vespa refuses, no sparse weights.
    static let oddID = "odd\u{1}doc"
    /// U+FDD0, a noncharacter (Swift refuses it in a literal).
    static let nonCharacter = String(Unicode.Scalar(0xFDD0)!)
    /// Its vectors as given (ColBERT is stored as float16, so these are exact in float16).
    static let oddDense: [Float] = (0 ..< 16).map { Float($0 % 5) - 2 }
    static let oddColBERT: [Float] = (0 ..< 48).map { Float($0 % 7) * 0.125 - 0.375 }

    /// An index of 8 corpus files, a document with metadata and the odd document.
    func buildIndex() throws -> SearchIndex {
        let index = try SearchIndex(path: path("a.m3index"), model: try BGEM3(folder: model),
                                    options: IndexOptions(maxLength: 48, overlap: 8, colbertStorage: .float16, denseStorage: .f32))
        let files = try FileManager.default.contentsOfDirectory(atPath: fixture("corpus")).sorted().filter { $0 != "LICENSE.md" }
        _ = try index.indexFiles(files.prefix(8).map { fixture("corpus/" + $0) })
        try index.add([DocumentInput(id: "note-1", text: "Tabs\tand \"quotes\" and ünïcödé 🚀 in a note.", metadata: ["lang": "en", "author": "ann"])])
        let norm = Self.oddDense.map { $0 * $0 }.reduce(0, +).squareRoot()
        let odd = Embedding(tokenIDs: [0, 5, 2], dense: Self.oddDense.map { $0 / norm }, sparse: SparseVector(),
                            colbert: MultiVector(dimension: 16, values: Self.oddColBERT))
        try index.add(encoded: [SearchIndex.EncodedDocument(id: Self.oddID, metadata: ["k": "v\u{B}"], chunks: [
            SearchIndex.EncodedChunk(text: "form\u{C}feed and \(Self.nonCharacter) noncharacter", tokenCount: 4, embedding: odd)])])
        return index
    }

    func export(_ engine: EngineExport.Engine, _ index: SearchIndex, to name: String, partBytes: Int = EngineExport.milvusPartBytes) throws -> EngineExport.Summary {
        try EngineExport.write(engine, indexAt: index.path, to: path(name), milvusPartBytes: partBytes)
    }

    func jsonLines(_ file: String) throws -> [[String: Any]] {
        try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    /// Every chunk with its row id, by "<path>#<ordinal>", from the exhaustive oracle search.
    func chunkRows(_ index: SearchIndex, query: Embedding) throws -> [String: SearchResult] {
        let all = try index.exhaustiveSearch(encoded: query, options: SearchOptions(k: 10_000, groupByDocument: false))
        XCTAssertEqual(all.count, index.chunkCount)
        return Dictionary(uniqueKeysWithValues: all.map { ("\($0.path)#\($0.chunk)", $0) })
    }

    // MARK: Qdrant

    func testQdrantPointsHoldTheIndexVectorsAndReproduceItsScores() throws {
        let index = try buildIndex()
        let summary = try export(.qdrant, index, to: "qdrant")
        XCTAssertEqual(summary.chunks, index.chunkCount)
        XCTAssertEqual(summary.files, ["collection.json", "points.jsonl", "export.json"])

        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("qdrant/collection.json")))) as! [String: Any]
        let vectors = config["vectors"] as! [String: [String: Any]]
        XCTAssertEqual(vectors["dense"]?["size"] as? Int, 16)
        XCTAssertEqual(vectors["dense"]?["distance"] as? String, "Dot")
        XCTAssertEqual((vectors["colbert"]?["multivector_config"] as? [String: String])?["comparator"], "max_sim")
        XCTAssertEqual((config["sparse_vectors"] as? [String: Any])?.keys.sorted(), ["sparse"])

        // A query whose scores the oracle computes exactly for every chunk.
        let q = try index.model.encode(["assert statement and augmented assignment"], options: EncodeOptions(maxLength: 512))[0]
        let rows = try chunkRows(index, query: q)
        let points = try jsonLines(path("qdrant/points.jsonl"))
        XCTAssertEqual(points.count, index.chunkCount)
        XCTAssertEqual(Set(points.map { $0["id"] as! String }).count, points.count, "point ids are unique")
        let w = index.defaultWeights
        for point in points {
            let payload = point["payload"] as! [String: Any]
            let chunkID = payload["chunk_id"] as! String
            let row = try XCTUnwrap(rows[chunkID], chunkID)
            XCTAssertEqual(point["id"] as? String, ChunkUUID.make(chunkID))
            XCTAssertEqual(payload["path"] as? String, row.path)
            XCTAssertEqual(payload["chunk"] as? Int, row.chunk)
            XCTAssertEqual(payload["char_start"] as? Int, row.charRange.lowerBound)
            XCTAssertEqual(payload["char_end"] as? Int, row.charRange.upperBound)
            XCTAssertEqual(payload["text"] as? String, row.text)
            let vector = point["vector"] as! [String: Any]
            // Dense: exactly the graph's copy of the vector.
            let dense = (vector["dense"] as! [Double]).map(Float.init)
            XCTAssertEqual(dense, index.hnsw.vector(forID: row.chunkID), chunkID)
            // Sparse: exactly the chunk's entries in the in-memory posting lists.
            let sparse = vector["sparse"] as! [String: [Double]]
            let indices = sparse["indices"]!.map { Int32($0) }, values = sparse["values"]!.map(Float.init)
            var postings: [Int32: Float] = [:]
            for (token, list) in try index.sparse.postings {
                if let j = list.index(of: row.chunkID) { postings[token] = list.weights[j] }
            }
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: zip(indices, values)), postings, chunkID)
            // The recipe's arithmetic on the point: dot product, Σ over shared tokens, Qdrant's
            // max_sim (a sum over query rows) divided by the query rows, fused.
            let colbert = (vector["colbert"] as! [[Double]]).map { $0.map(Float.init) }
            let d = zip(q.dense!, dense).map(*).reduce(0, +)
            var s: Float = 0
            for (i, token) in q.sparse!.ids.enumerated() { if let v = postings[token] { s += q.sparse!.weights[i] * v } }
            var maxSim: Float = 0
            for r in 0 ..< q.colbert!.count {
                maxSim += colbert.map { zip(q.colbert![r], $0).map(*).reduce(0, +) }.max()!
            }
            let c = maxSim / Float(q.colbert!.count)
            XCTAssertEqual(d, try XCTUnwrap(row.dense), accuracy: 1e-5, chunkID)
            XCTAssertEqual(s, try XCTUnwrap(row.sparse), accuracy: 1e-5, chunkID)
            XCTAssertEqual(c, try XCTUnwrap(row.colbert), accuracy: 1e-5, chunkID)
            XCTAssertEqual((w.dense * d + w.sparse * s + w.colbert * c) / (w.dense + w.sparse + w.colbert), row.score, accuracy: 1e-5)
        }
        // The odd document: its vectors as added (ColBERT exact in float16), no sparse entries.
        let odd = try XCTUnwrap(points.first { ($0["payload"] as! [String: Any])["path"] as? String == Self.oddID })
        let oddVector = odd["vector"] as! [String: Any]
        XCTAssertEqual((oddVector["colbert"] as! [[Double]]).flatMap { $0.map(Float.init) }, Self.oddColBERT)
        XCTAssertEqual((oddVector["sparse"] as! [String: [Double]])["indices"]!, [])
        XCTAssertEqual((odd["payload"] as! [String: Any])["metadata"] as? [String: String], ["k": "v\u{B}"])
    }

    func testChunkUUIDsAreVersion5UUIDs() {
        // FIPS 180 test vectors, and uuid5(NAMESPACE_DNS, "python.org") from Python's documentation.
        XCTAssertEqual(SHA1.hash(Array("abc".utf8)).map { String(format: "%02x", $0) }.joined(), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(SHA1.hash([]).map { String(format: "%02x", $0) }.joined(), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).map { String(format: "%02x", $0) }.joined(),
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        let dns: [UInt8] = [0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8]
        XCTAssertEqual(ChunkUUID.make("python.org", namespace: dns), "886313e1-3b8a-5372-9b90-0c9aee199e5d")
        // Python: uuid.uuid5(uuid.UUID("6d3f1c1e-8b0a-5c59-9f57-3e2b8a0c5d11"), "notes/a.md#0"),
        // the id the earlier Python converter gave the same chunk.
        XCTAssertEqual(ChunkUUID.make("notes/a.md#0"), "828c0ba2-67c5-5cb2-bbbd-75d015069fc2")
        XCTAssertEqual(ChunkUUID.make("ünï/🚀.md#12"), "a2131ce1-a4d4-5684-8007-185d0597998a")
    }

    // MARK: Milvus

    func testMilvusRowsMatchTheQdrantPointsAcrossParts() throws {
        let index = try buildIndex()
        _ = try export(.qdrant, index, to: "qdrant")
        // Parts of ~4 KB: many files, each a whole JSON document.
        let summary = try export(.milvus, index, to: "milvus", partBytes: 4096)
        XCTAssertEqual(summary.notes.count, 1, "the odd document's empty sparse vector gets the placeholder")
        let chunkParts = summary.files.filter { $0.hasPrefix("chunks/") }, tokenParts = summary.files.filter { $0.hasPrefix("colbert/") }
        XCTAssertGreaterThan(chunkParts.count, 3)
        XCTAssertEqual(chunkParts, chunkParts.sorted())
        func rows(_ parts: [String]) throws -> [[String: Any]] {
            try parts.flatMap { part -> [[String: Any]] in
                let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("milvus/" + part)))) as! [String: Any]
                XCTAssertEqual(object.keys.sorted(), ["rows"], part)
                return object["rows"] as! [[String: Any]]
            }
        }
        let chunkRows = try rows(chunkParts), tokenRows = try rows(tokenParts)
        let points = try jsonLines(path("qdrant/points.jsonl"))
        XCTAssertEqual(chunkRows.count, points.count)
        var tokens = tokenRows[...]
        for (row, point) in zip(chunkRows, points) {
            let payload = point["payload"] as! [String: Any], vector = point["vector"] as! [String: Any]
            XCTAssertEqual(row["chunk_id"] as? String, payload["chunk_id"] as? String)
            XCTAssertEqual(row["text"] as? String, payload["text"] as? String)
            XCTAssertEqual(row["dense"] as? [Double], vector["dense"] as? [Double])
            let sparse = vector["sparse"] as! [String: [Double]]
            let expected = sparse["indices"]!.isEmpty
                ? ["\(MilvusExport.placeholderToken)": Float.leastNormalMagnitude]
                : Dictionary(uniqueKeysWithValues: zip(sparse["indices"]!.map { String(Int($0)) }, sparse["values"]!.map(Float.init)))
            XCTAssertEqual((row["sparse"] as? [String: Double])?.mapValues(Float.init), expected)
            let colbert = vector["colbert"] as! [[Double]]
            XCTAssertEqual(row["colbert_rows"] as? Int, colbert.count)
            for (t, values) in colbert.enumerated() {
                let token = try XCTUnwrap(tokens.popFirst())
                XCTAssertEqual(token["id"] as? String, "\(row["chunk_id"] as! String)/\(t)")
                XCTAssertEqual(token["chunk_id"] as? String, row["chunk_id"] as? String)
                XCTAssertEqual(token["token"] as? Int, t)
                XCTAssertEqual(token["vector"] as? [Double], values)
            }
        }
        XCTAssertTrue(tokens.isEmpty)
        let body = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("milvus/chunks.collection.json")))) as! [String: Any]
        let fields = ((body["schema"] as! [String: Any])["fields"] as! [[String: Any]])
        XCTAssertEqual(fields.map { $0["fieldName"] as! String },
                       ["chunk_id", "path", "chunk", "char_start", "char_end", "token_count", "text", "metadata", "colbert_rows", "dense", "sparse"])
        XCTAssertEqual((fields[9]["elementTypeParams"] as? [String: Int])?["dim"], 16)
    }

    // MARK: Vespa

    func testVespaFeedAndSchema() throws {
        let index = try buildIndex()
        _ = try export(.qdrant, index, to: "qdrant")
        let summary = try export(.vespa, index, to: "vespa")
        XCTAssertEqual(summary.files, ["application/services.xml", "application/schemas/m3chunk.sd", "feed.jsonl", "export.json"])
        XCTAssertEqual(summary.notes.count, 2, summary.notes.joined(separator: "\n"))
        let schema = try String(contentsOfFile: path("vespa/application/schemas/m3chunk.sd"), encoding: .utf8)
        XCTAssertTrue(schema.contains("field dense type tensor<float>(x[16])"))
        XCTAssertTrue(schema.contains("field colbert type tensor<float>(t{}, x[16])"))
        XCTAssertTrue(schema.contains("query(w_dense) double: \(index.defaultWeights.dense)"))
        let puts = try jsonLines(path("vespa/feed.jsonl")), points = try jsonLines(path("qdrant/points.jsonl"))
        XCTAssertEqual(puts.count, points.count)
        for (put, point) in zip(puts, points) {
            let fields = put["fields"] as! [String: Any], payload = point["payload"] as! [String: Any]
            let vector = point["vector"] as! [String: Any]
            let chunkID = payload["chunk_id"] as! String
            let textual = chunkID.unicodeScalars.allSatisfy(VespaExport.isTextCharacter)
            XCTAssertEqual(put["put"] as? String, "id:m3:m3chunk::" + (textual ? chunkID : ChunkUUID.make(chunkID)))
            XCTAssertEqual(fields["dense"] as? [Double], vector["dense"] as? [Double])
            let sparse = vector["sparse"] as! [String: [Double]]
            let pairs = zip(sparse["indices"]!.map { String(Int($0)) }, sparse["values"]!)
            XCTAssertEqual(fields["sparse"] as? [String: Double], Dictionary(uniqueKeysWithValues: pairs))
            XCTAssertEqual(fields["sparse_tokens"] as? [String: Int],
                           Dictionary(uniqueKeysWithValues: pairs.map { ($0, max(1, Int((Double(Float($1)) * 1000).rounded()))) }))
            let colbert = vector["colbert"] as! [[Double]]
            XCTAssertEqual(fields["colbert"] as? [String: [Double]],
                           Dictionary(uniqueKeysWithValues: colbert.enumerated().map { ("\($0.offset)", $0.element) }))
            let text = fields["text"] as! String
            XCTAssertTrue(text.unicodeScalars.allSatisfy(VespaExport.isTextCharacter), text)
            XCTAssertEqual(text.unicodeScalars.count, (payload["text"] as! String).unicodeScalars.count, "one space per refused character")
        }
        let odd = try XCTUnwrap(puts.first { ($0["put"] as! String).hasSuffix(ChunkUUID.make(Self.oddID + "#0")) })
        XCTAssertEqual((odd["fields"] as! [String: Any])["text"] as? String, "form feed and   noncharacter")
        XCTAssertEqual((odd["fields"] as! [String: Any])["chunk_id"] as? String, "odd doc#0")
        XCTAssertTrue(VespaExport.isTextCharacter("\u{FFFE}") && !VespaExport.isTextCharacter("\u{1FFFE}")
                      && !VespaExport.isTextCharacter("\u{7}") && VespaExport.isTextCharacter("\u{85}"))
    }

    // MARK: Output folder safety

    func testTheSameIndexGivesTheSameBytes() throws {
        let index = try buildIndex()
        for engine in EngineExport.Engine.allCases {
            let a = try export(engine, index, to: "\(engine)-1"), b = try export(engine, index, to: "\(engine)-2")
            XCTAssertEqual(a.files, b.files)
            for file in a.files {
                XCTAssertEqual(FileManager.default.contents(atPath: path("\(engine)-1/" + file)),
                               FileManager.default.contents(atPath: path("\(engine)-2/" + file)), "\(engine) \(file)")
            }
        }
    }

    func testOutIsNeverDamaged() throws {
        let index = try buildIndex()
        // A folder with someone's files: refused, even with --force, and left as it was.
        try FileManager.default.createDirectory(atPath: path("mine"), withIntermediateDirectories: false)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: path("mine/notes.txt")))
        for replacing in [false, true] {
            XCTAssertThrowsError(try EngineExport.write(.qdrant, indexAt: index.path, to: path("mine"), replacing: replacing)) {
                XCTAssertEqual(exportError($0), .folderNotEmpty(path: self.path("mine")))
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("mine")), ["notes.txt"])
        // A file, a symbolic link, a FIFO: refused and untouched.
        try Data("file".utf8).write(to: URL(fileURLWithPath: path("file")))
        try FileManager.default.createSymbolicLink(atPath: path("link"), withDestinationPath: path("mine"))
        XCTAssertEqual(mkfifo(path("fifo"), 0o600), 0)
        for (name, kind) in [("file", "a file"), ("link", "a symbolic link"), ("fifo", "a FIFO")] {
            XCTAssertThrowsError(try EngineExport.write(.vespa, indexAt: index.path, to: path(name), replacing: true)) {
                XCTAssertEqual(exportError($0), .notAFolder(path: self.path(name), kind: kind))
            }
        }
        XCTAssertEqual(try String(contentsOfFile: path("file"), encoding: .utf8), "file")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: path("link")), path("mine"))
        // No parent folder.
        XCTAssertThrowsError(try EngineExport.write(.milvus, indexAt: index.path, to: path("none/out"))) {
            XCTAssertEqual(exportError($0), .missingParent(path: self.path("none")))
        }
        // An empty folder is used; an earlier export is replaced only with --force.
        try FileManager.default.createDirectory(atPath: path("out"), withIntermediateDirectories: false)
        _ = try EngineExport.write(.qdrant, indexAt: index.path, to: path("out") + "/")
        XCTAssertThrowsError(try EngineExport.write(.vespa, indexAt: index.path, to: path("out"))) {
            XCTAssertEqual(exportError($0), .earlierExport(path: self.path("out")))
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("out/points.jsonl")))
        _ = try EngineExport.write(.vespa, indexAt: index.path, to: path("out"), replacing: true)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("out")).sorted(), ["application", "export.json", "feed.jsonl"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [], "no staging folder left")
    }

    func testAFailureHalfwayLeavesNothing() throws {
        let index = try buildIndex()
        _ = try EngineExport.write(.qdrant, indexAt: index.path, to: path("kept"))
        let kept = try FileManager.default.contentsOfDirectory(atPath: path("kept")).sorted()
            .map { ($0, FileManager.default.contents(atPath: path("kept/" + $0))) }
        // The last chunk's dense vector no longer decodes (nor matches its checksum): the
        // export fails after writing every other chunk.
        try SQLiteConnection(path: index.path, mode: .readWrite)
            .execute("UPDATE chunks SET dense = X'00' WHERE id = (SELECT max(id) FROM chunks)")
        for engine in EngineExport.Engine.allCases {
            XCTAssertThrowsError(try EngineExport.write(engine, indexAt: index.path, to: path("out"))) { error in
                XCTAssertEqual((error as? M3SearchError)?.kind, .corrupt, "\(error)")
                // The row checksum catches it first (issue 16, item 5); without one, the decoder.
                XCTAssertTrue("\(error)".contains("does not decode") || "\(error)".contains("fails its checksum"), "\(error)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("out")), "\(engine)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
        }
        // A failed replacement leaves the earlier export as it was.
        XCTAssertThrowsError(try EngineExport.write(.qdrant, indexAt: index.path, to: path("kept"), replacing: true))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("kept")).sorted().map { $0 }, kept.map(\.0))
        for (name, data) in kept { XCTAssertEqual(FileManager.default.contents(atPath: path("kept/" + name)), data, name) }
    }

    /// The export's own cause of a thrown `M3SearchError`.
    func exportError(_ error: any Error) -> ExportError? {
        guard let e = error as? M3SearchError else { XCTFail("not an M3SearchError: \(error)"); return nil }
        return e.underlying as? ExportError
    }

    // MARK: Command line

    func testCommandLine() throws {
        let index = try buildIndex()
        var run = try runM3Search(["export", "--format", "milvus", "--index", index.path, "--out", path("m")], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("exported \(index.chunkCount) chunks for milvus to \(path("m"))"), run.stderr)
        XCTAssertTrue(run.stderr.contains("note: 1 chunk(s) have no sparse weights"), run.stderr)
        run = try runM3Search(["export", "--format", "milvus", "--index", index.path, "--out", path("m")], stdin: "")
        XCTAssertEqual(run.status, 64)
        XCTAssertTrue(run.stderr.contains("holds an earlier export: pass --force to replace it, or choose another --out folder"), run.stderr)
        try Data("x".utf8).write(to: URL(fileURLWithPath: path("file")))
        run = try runM3Search(["export", "--format", "qdrant", "--index", index.path, "--out", path("file")], stdin: "")
        XCTAssertEqual(run.status, 64)
        XCTAssertTrue(run.stderr.contains("--out \(path("file")) is a file, not a folder: give a new or empty folder"), run.stderr)
        run = try runM3Search(["export", "--format", "vespa", "--index", path("missing.m3index"), "--out", path("v")], stdin: "")
        XCTAssertEqual(run.status, 66, run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("v")))
        run = try runM3Search(["export", "--format", "milvus", "--index", index.path, "--out", path("m"), "--force"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        run = try runM3Search(["export", "--format", "vespa", "--index", index.path], stdin: "")
        XCTAssertEqual(run.status, 64, run.stderr)
        XCTAssertTrue(run.stderr.contains("--format vespa writes a folder: give it with --out DIR"), run.stderr)
        run = try runM3Search(["export", "--format", "jsonl", "--index", index.path, "--force"], stdin: "")
        XCTAssertEqual(run.status, 64, run.stderr)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("m/export.json")))) as! [String: Any]
        XCTAssertEqual(manifest["engine"] as? String, "milvus")
        XCTAssertEqual(manifest["chunks"] as? Int, index.chunkCount)
        XCTAssertEqual((manifest["settings"] as? [String: Any])?["modelID"] as? String, index.model.identity)
    }

    // MARK: The engines themselves (optional)

    /// The round trip of `Benchmarks/engines.py --check`: the committed corpus indexed and
    /// exported by this build's m3search, loaded into Milvus Lite (and Qdrant's local mode
    /// when asked), the Vespa export validated, and the top 10 of every exact recipe compared
    /// with `m3search query` for the fixture queries. Needs a Python with
    /// Benchmarks/requirements-engines.txt: set M3SEARCH_ENGINES_PYTHON to it (and
    /// M3SEARCH_ENGINES to e.g. `qdrant,milvus,vespa`; the default `milvus,vespa` takes about
    /// three minutes). CI has no Python packages and skips it.
    func testEnginesReproduceTheRankingWhenPythonIsGiven() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let python = environment["M3SEARCH_ENGINES_PYTHON"], !python.isEmpty else {
            throw XCTSkip("set M3SEARCH_ENGINES_PYTHON to a Python with Benchmarks/requirements-engines.txt to run the engines")
        }
        let root = URL(fileURLWithPath: fixture("corpus")).deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [root.appendingPathComponent("Benchmarks/engines.py").path, "--m3search", m3searchBinary.path,
                             "--work", path("work"), "--engines", environment["M3SEARCH_ENGINES"] ?? "milvus,vespa", "--check"]
        let log = dir.appendingPathComponent("engines.log")
        try Data().write(to: log)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        let output = try String(contentsOf: log, encoding: .utf8)
        XCTAssertEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("check passed"), output)
        XCTAssertTrue(output.contains("milvus: hybrid_search candidates + client-side fusion"), output)
    }
}
