// Loading a model folder: the cached tokenizer tables and identity, and hostile inputs
// found by the red-team pass (issue 16, items 3, 7, 8, 10) — each a clear ModelError.
import Foundation
@testable import M3Model
import M3Tokenizer
import XCTest

final class ModelLoadingTests: XCTestCase {
    // Building XLM-R's tokenizer tables (250,002 pieces) takes seconds in a debug build,
    // mapping them milliseconds. So the class builds them once: the first load of the
    // fixture model into an empty cache (`freshLoad`), whose image and digests later
    // loads copy (`warmCache`). Tests of the cache's own mechanics (damage, rebuild,
    // tokenizer.json in the key and identity) use the same model with the 62-piece
    // unigram-62.model as its tokenizer (`smallTokenizerModel`): every rebuild is cheap.

    /// The cache `freshLoad` filled, shared by the class.
    static let warmDirectory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3-load-warm-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
    /// XCTest runs a class's tests one at a time: no lock needed.
    nonisolated(unsafe) private static var fresh: BGEM3?

    override class func tearDown() {
        try? FileManager.default.removeItem(at: warmDirectory)
        fresh = nil
        super.tearDown()
    }

    /// The fixture model's first load, into the empty `warmDirectory`: it built the
    /// tokenizer tables from sentencepiece.bpe.model and hashed and verified the weights.
    func freshLoad() throws -> BGEM3 {
        if let fresh = Self.fresh { return fresh }
        let model = try BGEM3(folder: fixture("models/tiny-safetensors"), cache: ModelCache(directory: Self.warmDirectory.path))
        Self.fresh = model
        return model
    }

    /// A new cache folder holding XLM-R's tokenizer image as the fresh load wrote it and,
    /// with `digests`, its digests of the fixture files (keyed by path: a link to a fixture
    /// file elsewhere is hashed again). Loads in it map the tokenizer, and hash and verify
    /// the weights afresh unless the digests are there.
    func warmCache(digests: Bool = false) throws -> ModelCache {
        _ = try freshLoad()
        let fm = FileManager.default
        let folder = try temporaryFolder()
        for name in try fm.contentsOfDirectory(atPath: Self.warmDirectory.path)
        where name.hasPrefix("tokenizer-") || (digests && name == DigestCache.fileName) {
            try fm.copyItem(at: Self.warmDirectory.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        return ModelCache(directory: folder.path)
    }

    /// The tiny model with Fixtures/tokenizer/unigram-62.model as its SentencePiece model
    /// (62 ids, within the model's vocabulary) and `copying` as real copies.
    func smallTokenizerModel(copying: [String] = []) throws -> URL {
        let folder = try modelCopy("tiny-safetensors", copying: copying)
        let spm = folder.appendingPathComponent("sentencepiece.bpe.model")
        try FileManager.default.removeItem(at: spm)
        try FileManager.default.createSymbolicLink(at: spm, withDestinationURL: URL(fileURLWithPath: fixture("tokenizer/unigram-62.model")))
        return folder
    }

    // MARK: Cache and identity

    /// A second load maps the cached tokenizer tables and digests instead of rebuilding
    /// and hashing; both loads tokenize and encode identically, and digests hashed afresh
    /// or with the cache off give the same identity.
    func testCachedLoadMatchesAFreshBuild() throws {
        let folder = fixture("models/tiny-safetensors")
        let first = try freshLoad()
        XCTAssertFalse(first.loadTimings.tokenizerFromCache)
        XCTAssertFalse(first.loadTimings.identityFromCache)
        let second = try BGEM3(folder: folder, cache: try warmCache(digests: true))
        XCTAssertTrue(second.loadTimings.tokenizerFromCache, "\(second.loadTimings)")
        XCTAssertTrue(second.loadTimings.identityFromCache, "\(second.loadTimings)")
        XCTAssertEqual(second.identity, first.identity)
        let rehashed = try BGEM3(folder: folder, cache: try warmCache())
        XCTAssertFalse(rehashed.loadTimings.identityFromCache)
        XCTAssertEqual(rehashed.identity, first.identity)

        // Hugging Face's ids for each string (Fixtures/tokenizer, from XLMRobertaTokenizerFast).
        let strings = try tokenizerStrings(limit: 600)
        for (text, ids, maxLength) in strings {
            XCTAssertEqual(second.tokenizer.encode(text, maxLength: maxLength).map(Int.init), ids, String(reflecting: text))
            XCTAssertEqual(second.tokenizer.encodeWithOffsets(text).offsets, first.tokenizer.encodeWithOffsets(text).offsets, text)
        }
        let texts = strings.map(\.text)
        XCTAssertEqual(try second.encode(Array(texts.prefix(8))), try first.encode(Array(texts.prefix(8))))
    }

    /// With the cache off, a load builds the tokenizer and hashes every file (and, as
    /// always, writes nothing into the model folder); its identity and token ids are those
    /// of a cached load.
    func testDisabledCacheBuildsEverything() throws {
        let folder = try smallTokenizerModel().path
        let cache = ModelCache(directory: try temporaryFolder().path)
        _ = try BGEM3(folder: folder, cache: cache)
        let cached = try BGEM3(folder: folder, cache: cache)
        XCTAssertTrue(cached.loadTimings.tokenizerFromCache && cached.loadTimings.identityFromCache, "\(cached.loadTimings)")
        let uncached = try BGEM3(folder: folder, cache: .disabled)
        XCTAssertFalse(uncached.loadTimings.tokenizerFromCache)
        XCTAssertFalse(uncached.loadTimings.identityFromCache)
        XCTAssertEqual(uncached.identity, cached.identity)
        XCTAssertEqual(uncached.tokenizer.encode("cached or not"), cached.tokenizer.encode("cached or not"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("tokenizer-") }, [])
    }

    /// Any damage to a cached tokenizer image (flipped byte, truncation, garbage with a
    /// valid checksum is covered by the validation test below) means a rebuild, never a
    /// crash or other token ids.
    func testDamagedTokenizerCacheIsRebuilt() throws {
        let directory = try temporaryFolder()
        let cache = ModelCache(directory: directory.path)
        let folder = try smallTokenizerModel().path
        XCTAssertFalse(try BGEM3(folder: folder, cache: cache).loadTimings.tokenizerFromCache)
        let reference = try BGEM3(folder: folder, cache: cache)
        XCTAssertTrue(reference.loadTimings.tokenizerFromCache)
        let image = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: directory.path).first { $0.hasPrefix("tokenizer-") })
        let url = directory.appendingPathComponent(image)
        let intact = try Data(contentsOf: url)
        for damage in ["flip", "truncate"] {
            var bytes = intact
            switch damage {
            case "flip": bytes[bytes.count / 2] ^= 0x40
            default: bytes = bytes.prefix(bytes.count / 2)
            }
            try bytes.write(to: url)
            let model = try BGEM3(folder: folder, cache: cache)
            XCTAssertFalse(model.loadTimings.tokenizerFromCache, damage)
            XCTAssertEqual(model.tokenizer.encode("Caching tokenizers ﬁne"), reference.tokenizer.encode("Caching tokenizers ﬁne"), damage)
            XCTAssertEqual(try Data(contentsOf: url), intact, "\(damage): the rebuilt image replaces the damaged one")
        }
    }

    /// The image loader validates every index itself: an image that passes the file
    /// checksum but lies (edges past the table, ids past the vocabulary) is refused.
    func testLyingTokenizerImageIsRefused() throws {
        let tokenizer = try freshLoad().tokenizer  // XLM-R's tables, built from sentencepiece.bpe.model
        let image = tokenizer.serializedImage()
        let nodesOffset = 48 + (8 * tokenizer.vocabularySize + 7) / 8 * 8
        for (offset, value) in [(nodesOffset + 4, UInt32.max),              // root edge count
                                (nodesOffset + 12 + 8, UInt32(250_002)),   // node 1's id = vocabulary size
                                (8, UInt32(3)),                            // vocabulary size below the minimum
                                (12, UInt32(1))] {                         // node count that disagrees with the size
            var bytes = image
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
            let owner = AlignedBytes(bytes)
            XCTAssertThrowsError(try XLMRobertaTokenizer(image: owner.buffer, keepingAlive: owner), "offset \(offset)")
        }
        let owner = AlignedBytes(image)
        let loaded = try XLMRobertaTokenizer(image: owner.buffer, keepingAlive: owner)
        XCTAssertEqual(loaded.encode("intact image ✓"), tokenizer.encode("intact image ✓"))
    }

    /// `<mask>` is the last id of whatever SentencePiece model is loaded (found by
    /// FuzzTokenizer: it was XLM-R's 250001 even for a 62-piece model), from the tables
    /// and from their image alike.
    func testMaskIsTheLastIdOfAnyVocabulary() throws {
        // Fixtures/tokenizer/unigram-62.model: 62 pieces trained by sentencepiece 0.2 (identity normaliser).
        let tokenizer = try XLMRobertaTokenizer(modelPath: fixture("tokenizer/unigram-62.model"))
        XCTAssertLessThan(tokenizer.vocabularySize, 100)
        XCTAssertEqual(tokenizer.encode("<mask>"), [0, Int32(tokenizer.vocabularySize - 1), 2])
        let owner = AlignedBytes(tokenizer.serializedImage())
        let fromImage = try XLMRobertaTokenizer(image: owner.buffer, keepingAlive: owner)
        XCTAssertEqual(fromImage.encode("a <mask> b"), tokenizer.encode("a <mask> b"))
        XCTAssertTrue(fromImage.encode("a <mask> b").allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize })
    }

    /// A SentencePiece model with a NaN or infinite score is refused when built, as its
    /// image is when loaded (found by FuzzTokenizer: the model loaded, its image did not).
    func testNonFiniteSentencePieceScoreIsRefused() throws {
        var model = try Data(contentsOf: URL(fileURLWithPath: fixture("tokenizer/unigram-62.model")))
        // The first piece with a float score after the three specials: field 2 (score), wire type 5.
        let pieces = try sentencepiecePieces(fixture("tokenizer/unigram-62.model"))
        let score = Float(pieces[3].1)
        let pattern = Data([0x15]) + withUnsafeBytes(of: score.bitPattern.littleEndian) { Data($0) }
        let at = try XCTUnwrap(model.firstRange(of: pattern)).lowerBound
        for bits: UInt32 in [0x7FC0_0000, 0xFF80_0000] {
            withUnsafeBytes(of: bits.littleEndian) { for (i, b) in $0.enumerated() { model[at + 1 + i] = b } }
            XCTAssertThrowsError(try XLMRobertaTokenizer(model: [UInt8](model), modelPath: "m.model", tokenizerJSON: nil, tokenizerJSONPath: nil)) { error in
                XCTAssertTrue("\(error)".contains("piece 3 has a score that is not a finite number"), "\(error)")
            }
        }
    }

    /// A SentencePiece model with an empty piece made libsentencepiece throw a C++
    /// exception through our C interface, which aborted the process (found by
    /// FuzzTokenizer): it is now a TokenizerError.
    func testSentencePieceExceptionIsAnError() {
        // Fixtures/tokenizer/empty-piece.model: unigram-62.model with one piece emptied.
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: fixture("tokenizer/empty-piece.model"))) { error in
            guard case TokenizerError.cannotLoadModel(_, let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("malformed SentencePiece model"), message)
        }
    }

    /// Identity v2 covers tokenizer.json and every byte of the weights: the two changes the
    /// first-generation identity missed (issue 16 item 3) now change it, and the cached
    /// digest is not used once the file's stamp changed.
    func testIdentityCoversTokenizerJSONAndEveryWeightByte() throws {
        let cache = ModelCache(directory: try temporaryFolder().path)
        let folder = try smallTokenizerModel(copying: ["model.safetensors"])
        let original = try BGEM3(folder: folder.path, cache: cache)
        let legacy = try original.legacyIdentity()

        // A byte in the middle of the word embeddings: between the old identity's samples.
        let weights = folder.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: weights)
        let offset = 4_000_123
        bytes[offset] ^= 0x01  // low mantissa bit of a float16: still finite
        try bytes.write(to: weights)
        let rewritten = try BGEM3(folder: folder.path, cache: cache)
        XCTAssertFalse(rewritten.loadTimings.identityFromCache)
        XCTAssertNotEqual(rewritten.identity, original.identity)
        XCTAssertEqual(try rewritten.legacyIdentity(), legacy, "the first-generation identity misses this change")

        // A tokenizer.json, then the same with another score for <mask> (its last entry).
        let json = folder.appendingPathComponent("tokenizer.json")
        var text = try tokenizerJSON(from: fixture("tokenizer/unigram-62.model"))
        try text.write(to: json)
        let withJSON = try BGEM3(folder: folder.path, cache: cache)
        let mask = try XCTUnwrap(text.lastRange(of: Data(#""<mask>","#.utf8)))
        let end = try XCTUnwrap(text[mask.upperBound...].firstIndex(of: UInt8(ascii: "]")))
        text.replaceSubrange(mask.upperBound ..< end, with: Data("-1.5".utf8))
        try text.write(to: json)
        let otherScores = try BGEM3(folder: folder.path, cache: cache)
        XCTAssertNotEqual(withJSON.identity, rewritten.identity)
        XCTAssertNotEqual(otherScores.identity, withJSON.identity)
        XCTAssertEqual(try otherScores.legacyIdentity(), legacy, "the first-generation identity ignores tokenizer.json")
    }

    /// Identities recorded by m3search before v2 (computed by the release at 067284e for
    /// these committed fixtures) are recognised as `.legacy`, anything else `.different`,
    /// the other fixture model's old identity included.
    func testFirstGenerationIdentityIsRecognised() throws {
        let cache = try warmCache(digests: true)
        let recorded = ["tiny-safetensors": "21e51d82208c2980", "tiny-bin": "d6709fe975e95f42"]
        for (name, other) in [("tiny-safetensors", "tiny-bin"), ("tiny-bin", "tiny-safetensors")] {
            let model = try BGEM3(folder: fixture("models/\(name)"), cache: cache)
            XCTAssertTrue(model.identity.hasPrefix("m3id2:"), model.identity)
            XCTAssertEqual(model.matchIdentity(model.identity), .same)
            XCTAssertEqual(model.matchIdentity(try XCTUnwrap(recorded[name])), .legacy, name)
            XCTAssertEqual(model.matchIdentity("m3id2:" + String(repeating: "0", count: 32)), .different)
            // Recomputing the old identity is slow in a debug build: once more, for one model.
            if name == "tiny-safetensors" { XCTAssertEqual(model.matchIdentity(try XCTUnwrap(recorded[other])), .different) }
        }
    }

    /// A damaged digest cache (garbage lines, a wrong digest for a stale stamp) is ignored
    /// or corrected, never trusted for a file whose stamp changed.
    func testDigestCacheIsUntrusted() throws {
        let cache = try warmCache()
        let directory = URL(fileURLWithPath: try XCTUnwrap(cache.directory))
        let folder = fixture("models/tiny-bin")
        let reference = try BGEM3(folder: folder, cache: try warmCache()).identity
        let table = directory.appendingPathComponent(DigestCache.fileName)
        try Data((DigestCache.header + "\nnot a record\n\u{0}\u{1}\n" + String(repeating: "f", count: 5000) + "\n").utf8).write(to: table)
        XCTAssertEqual(try BGEM3(folder: folder, cache: cache).identity, reference)
        // Every recorded digest replaced by another, with stamps that no longer match.
        let text = try String(contentsOf: table, encoding: .utf8)
        let forged = text.split(separator: "\n").map { line -> String in
            var fields = line.split(separator: " ", maxSplits: 7).map(String.init)
            guard fields.count == 8 else { return String(line) }
            fields[0] = String(repeating: "0", count: 32)
            fields[5] = "1"  // mtime
            return fields.joined(separator: " ")
        }.joined(separator: "\n") + "\n"
        try Data(forged.utf8).write(to: table)
        let model = try BGEM3(folder: folder, cache: cache)
        XCTAssertFalse(model.loadTimings.identityFromCache)
        XCTAssertEqual(model.identity, reference)
    }

    // MARK: Hostile config.json (issue 16 items 7 and 10)

    func testConfigNumbersOutOfRangeAreClearErrors() throws {
        let base = try String(contentsOfFile: fixture("models/tiny-safetensors/config.json"), encoding: .utf8)
        let cases: [(key: String, value: String)] = [
            ("hidden_size", "1e19"), ("hidden_size", "1e300"), ("hidden_size", "-1e300"), ("hidden_size", "1e400"),
            ("hidden_size", "99999999999999999999999"), ("hidden_size", "16.5"), ("hidden_size", "\"16\""),
            ("vocab_size", "1e19"), ("intermediate_size", "-64"), ("max_position_embeddings", "1e300"),
            ("num_hidden_layers", "16777216"), ("num_hidden_layers", "2147483648"), ("num_attention_heads", "0"),
            ("type_vocab_size", "true"), ("pad_token_id", "1e300"), ("pad_token_id", "-1"),
            ("layer_norm_eps", "\"x\""), ("layer_norm_eps", "-1"), ("layer_norm_eps", "0"), ("layer_norm_eps", "1e-50"),
            ("layer_norm_eps", "1e999"), ("layer_norm_eps", "null"), ("hidden_act", "5"), ("hidden_act", "\"relu\""),
        ]
        for (key, value) in cases {
            let json = try replacing(key, with: value, in: base)
            XCTAssertThrowsError(try ModelConfig.parse(Array(json.utf8), path: "config.json"), "\(key) = \(value)") { error in
                guard case ModelError.invalidConfig(_, let detail) = error else { return XCTFail("\(key) = \(value): \(error)") }
                XCTAssertTrue(detail.contains(key), "\(key) = \(value): \(detail)")
            }
        }
        // Whole numbers written as floats are still sizes; an absent eps takes XLMRobertaConfig's default.
        let float = try ModelConfig.parse(Array(try replacing("hidden_size", with: "16.0", in: base).utf8), path: "config.json")
        XCTAssertEqual(float.hiddenSize, 16)
        let noEps = base.replacingOccurrences(of: #""layer_norm_eps": 1e-05,"#, with: "")
        XCTAssertNotEqual(noEps, base)
        XCTAssertEqual(try ModelConfig.parse(Array(noEps.utf8), path: "config.json").layerNormEps, 1e-12)
    }

    func testConfigWithDuplicateKeysOrDeepNestingIsAnError() {
        for json in [#"{"hidden_size": 16, "hidden_size": 32}"#, String(repeating: "[", count: 100_000)] {
            XCTAssertThrowsError(try ModelConfig.parse(Array(json.utf8), path: "config.json")) { error in
                guard case ModelError.invalidConfig = error else { return XCTFail("\(error)") }
            }
        }
    }

    /// A config with fewer layers than the weights names the tensors it would drop.
    func testFewerLayersThanTheWeightsNamesTheExtraTensors() throws {
        let folder = try modelCopy("tiny-safetensors", copying: ["config.json"])
        try setConfig(folder, "num_hidden_layers", "1")
        XCTAssertThrowsError(try BGEM3(folder: folder.path, cache: try warmCache())) { error in
            guard case ModelError.unexpectedTensors(_, let names, let hint) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(names.allSatisfy { $0.hasPrefix("encoder.layer.1.") }, "\(names)")
            XCTAssertEqual(names.count, 16)
            XCTAssertTrue(hint.contains("layers up to 1"), hint)
        }
    }

    // MARK: Hostile weights

    func testDuplicateSafetensorsKeysAreAnError() throws {
        let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
        bytes += [UInt8](repeating: 0, count: 8)
        let path = try temporaryFile(Data(bytes))
        XCTAssertThrowsError(try WeightFile.load(path)) { error in
            XCTAssertTrue("\(error)".contains("duplicate key \"w\""), "\(error)")
        }
    }

    /// NaN and infinity in a weight name the tensor and element, at load (when the cache
    /// has not verified this version of the file) and in `WeightFile.load`.
    func testNonFiniteWeightsNameTheTensor() throws {
        for (bits, what): (UInt16, String) in [(0x7E00, "NaN"), (0x7C00, "+inf"), (0xFC00, "-inf")] {
            let folder = try modelCopy("tiny-safetensors", copying: ["model.safetensors"])
            let weights = folder.appendingPathComponent("model.safetensors")
            var bytes = try Data(contentsOf: weights)
            let (offset, tensor) = try safetensorsOffset(bytes, tensor: "encoder.layer.1.intermediate.dense.weight", element: 37)
            bytes[offset] = UInt8(bits & 0xFF)
            bytes[offset + 1] = UInt8(bits >> 8)
            try bytes.write(to: weights)
            let cache = try warmCache()
            for load in [{ _ = try BGEM3(folder: folder.path, cache: cache) },
                         { _ = try WeightFile.load(weights.path, verify: true) }] {
                XCTAssertThrowsError(try load(), what) { error in
                    XCTAssertEqual(error as? ModelError, .nonFiniteWeight(path: weights.path, name: tensor, index: 37), what)
                }
            }
        }
    }

    /// A torch zip checkpoint whose entry bytes no longer match their CRC-32.
    func testZipCRCMismatchNamesTheEntry() throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: fixture("weights/model_f32.pt")))
        let good = try temporaryFile(bytes)
        XCTAssertNoThrow(try WeightFile.load(good, verify: true))
        // The first storage entry's data: after its local header ("PK\3\4" + 26 + name + extra).
        let name = Array("model_f32/data/0".utf8)
        let at = try XCTUnwrap(bytes.firstRange(of: Data(name))).lowerBound
        let header = at - 30
        let nameLength = Int(bytes[header + 26]) | (Int(bytes[header + 27]) << 8)
        let extra = Int(bytes[header + 28]) | (Int(bytes[header + 29]) << 8)
        bytes[header + 30 + nameLength + extra] ^= 0x01
        let bad = try temporaryFile(bytes)
        XCTAssertNoThrow(try WeightFile.load(bad), "parsing alone does not read the entries' bytes")
        XCTAssertThrowsError(try WeightFile.load(bad, verify: true)) { error in
            XCTAssertEqual(error as? ModelError, .checksumMismatch(path: bad, entry: "model_f32/data/0"))
        }
    }

    // MARK: Special and oversized files (issue 16 item 8)

    /// A FIFO as any model file is refused at once (opening one for reading would wait
    /// for a writer forever); a device is refused unread.
    func testFIFOsAndDevicesAreRefusedWithoutBlocking() throws {
        for file in ["config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json", "colbert_linear.pt"] {
            let folder = try modelCopy("tiny-safetensors", copying: [])
            let target = folder.appendingPathComponent(file)
            try? FileManager.default.removeItem(at: target)
            XCTAssertEqual(mkfifo(target.path, 0o600), 0)
            let error = try loadWithDeadline(folder.path, cache: try warmCache(), unblocking: target.path)
            XCTAssertEqual(error as? ModelError, .notRegularFile(path: target.path, kind: "a FIFO (named pipe)"), file)
        }
        for file in ["sentencepiece.bpe.model", "config.json"] {
            let folder = try modelCopy("tiny-safetensors", copying: [])
            let target = folder.appendingPathComponent(file)
            try FileManager.default.removeItem(at: target)
            try FileManager.default.createSymbolicLink(atPath: target.path, withDestinationPath: "/dev/zero")
            XCTAssertThrowsError(try BGEM3(folder: folder.path, cache: try warmCache())) { error in
                XCTAssertEqual(error as? ModelError, .notRegularFile(path: target.path, kind: "a character device"), file)
            }
        }
    }

    /// A sentencepiece.bpe.model (or tokenizer.json, config.json) far larger than any
    /// genuine one is refused before a byte is read (a sparse file: no disk used).
    func testOversizedFilesAreRefusedBeforeReading() throws {
        for (file, size) in [("sentencepiece.bpe.model", 1 << 32), ("tokenizer.json", 1 << 30), ("config.json", 1 << 21)] {
            let folder = try modelCopy("tiny-safetensors", copying: [])
            let target = folder.appendingPathComponent(file)
            try? FileManager.default.removeItem(at: target)
            XCTAssertTrue(FileManager.default.createFile(atPath: target.path, contents: nil))
            XCTAssertEqual(truncate(target.path, off_t(size)), 0)
            XCTAssertThrowsError(try BGEM3(folder: folder.path, cache: try warmCache())) { error in
                guard case ModelError.fileTooLarge(let path, let actual, _) = error else { return XCTFail("\(file): \(error)") }
                XCTAssertEqual(path, target.path)
                XCTAssertEqual(actual, Int64(size))
            }
        }
    }

    // MARK: Helpers

    /// Loads `folder` on another thread; if it has not returned within 20 s, opens the
    /// FIFO for writing to release it and fails (the load blocked on the FIFO).
    func loadWithDeadline(_ folder: String, cache: ModelCache, unblocking fifo: String) throws -> Error? {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Error?
        Thread.detachNewThread {
            do { _ = try BGEM3(folder: folder, cache: cache) } catch { result = error }
            done.signal()
        }
        if done.wait(timeout: .now() + 20) == .timedOut {
            XCTFail("loading \(folder) blocked on the FIFO \(fifo)")
            let fd = open(fifo, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
            done.wait()
        }
        return result
    }

    func fixture(_ name: String) -> String {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path), folder.path != "/" {
            folder.deleteLastPathComponent()
        }
        return folder.appendingPathComponent("Fixtures/\(name)").path
    }

    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3-load-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func temporaryFile(_ bytes: Data) throws -> String {
        let url = try temporaryFolder().appendingPathComponent("weights")
        try bytes.write(to: url)
        return url.path
    }

    /// A folder of symbolic links to a fixture model's files, with `copying` as real copies.
    func modelCopy(_ model: String, copying: [String]) throws -> URL {
        let source = URL(fileURLWithPath: fixture("models/\(model)"))
        let folder = try temporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) {
            let file = source.appendingPathComponent(name).resolvingSymlinksInPath()
            if copying.contains(name) {
                try FileManager.default.copyItem(at: file, to: folder.appendingPathComponent(name))
            } else {
                try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name), withDestinationURL: file)
            }
        }
        return folder
    }

    func setConfig(_ folder: URL, _ key: String, _ value: String) throws {
        let url = folder.appendingPathComponent("config.json")
        let text = try replacing(key, with: value, in: String(contentsOf: url, encoding: .utf8))
        try Data(text.utf8).write(to: url)
    }

    /// config.json text with `"key": <old>` replaced by `"key": value`.
    func replacing(_ key: String, with value: String, in json: String) throws -> String {
        let pattern = try NSRegularExpression(pattern: "\"\(key)\": *[^,}]+")
        let range = NSRange(json.startIndex..., in: json)
        XCTAssertEqual(pattern.numberOfMatches(in: json, range: range), 1, key)
        return pattern.stringByReplacingMatches(in: json, range: range, withTemplate: "\"\(key)\": \(NSRegularExpression.escapedTemplate(for: value))")
    }

    /// The byte offset of float16 `element` of `tensor` in a safetensors file.
    func safetensorsOffset(_ bytes: Data, tensor: String, element: Int) throws -> (Int, String) {
        let n = bytes.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8 ..< 8 + n)) as? [String: Any]
        let entry = try XCTUnwrap(header?[tensor] as? [String: Any])
        XCTAssertEqual(entry["dtype"] as? String, "F16")
        let begin = try XCTUnwrap((entry["data_offsets"] as? [Int])?.first)
        return (8 + n + begin + 2 * element, tensor)
    }

    /// A tokenizer.json whose model.vocab lists the SentencePiece pieces with their scores
    /// (the specials and <mask> as Hugging Face writes them).
    func tokenizerJSON(from model: String) throws -> Data {
        let pieces = try sentencepiecePieces(model)
        var vocab: [[Any]] = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
        for (piece, score) in pieces.dropFirst(3) { vocab.append([piece, score]) }
        vocab.append(["<mask>", 0.0])
        return try JSONSerialization.data(withJSONObject: ["model": ["type": "Unigram", "vocab": vocab]])
    }

    /// (piece, score) of every SentencePiece piece, in id order, read from the model's
    /// protobuf (ModelProto.pieces = field 1: piece = 1, score = 2).
    func sentencepiecePieces(_ path: String) throws -> [(String, Double)] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var result: [(String, Double)] = []
        var i = 0
        func varint() -> Int {
            var v = 0, shift = 0
            while true { let b = bytes[i]; i += 1; v |= Int(b & 0x7F) << shift; if b < 0x80 { return v }; shift += 7 }
        }
        while i < bytes.count {
            let key = varint()
            switch key & 7 {
            case 0: _ = varint()
            case 1: i += 8
            case 5: i += 4
            case 2:
                let n = varint(), end = i + n
                if key >> 3 == 1 {
                    var piece = "", score = 0.0
                    while i < end {
                        let k = varint()
                        switch (k >> 3, k & 7) {
                        case (1, 2): let m = varint(); piece = String(decoding: bytes[i ..< i + m], as: UTF8.self); i += m
                        case (2, 5): score = Double(Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)); i += 4
                        case (_, 0): _ = varint()
                        case (_, 2): i += varint()
                        case (_, 5): i += 4
                        default: i += 8
                        }
                    }
                    result.append((piece, score))
                }
                i = end
            default: throw CocoaError(.fileReadCorruptFile)
            }
        }
        return result
    }

    func tokenizerStrings(limit: Int) throws -> [(text: String, ids: [Int], maxLength: Int)] {
        struct Entry: Decodable { let text: String; let ids: [Int]; let max_length: Int? }
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("tokenizer/strings.jsonl")))
        return try data.split(separator: UInt8(ascii: "\n")).prefix(limit).map { line in
            let entry = try JSONDecoder().decode(Entry.self, from: Data(line))
            return (entry.text, entry.ids, entry.max_length ?? 1 << 30)
        }
    }
}

/// Bytes in 8-byte-aligned memory, as a memory map would give them.
private final class AlignedBytes {
    let buffer: UnsafeRawBufferPointer
    init(_ bytes: [UInt8]) {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { memory.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        buffer = UnsafeRawBufferPointer(start: memory.baseAddress, count: bytes.count)
    }
    deinit { buffer.baseAddress.map { UnsafeMutableRawPointer(mutating: $0).deallocate() } }
}
