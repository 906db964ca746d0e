import Foundation
import XCTest

@testable import M3Tokenizer

/// Fixtures/tokenizer/strings.jsonl (written by Fixtures/make_tokenizer_fixtures.py from the
/// Hugging Face tokenizer FlagEmbedding uses) and Fixtures/tokenizer/sentencepiece.bpe.model.
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")
    static let modelPath = directory.appendingPathComponent("sentencepiece.bpe.model").path

    struct Entry: Decodable {
        var text: String
        var ids: [Int32]
        var max_length: Int?
        var tie: Bool?
        var source: String?
    }

    static let entries: [Entry] = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("strings.jsonl"))
        let decoder = JSONDecoder()
        return data.split(separator: UInt8(ascii: "\n")).map { try! decoder.decode(Entry.self, from: Data($0)) }
    }()

    /// The tokenizer from the model file alone (float32 scores).
    static let tokenizer: XLMRobertaTokenizer = try! XLMRobertaTokenizer(modelPath: modelPath)

    /// XLM-R's tokenizer.json (17 MB, never committed): $M3_TOKENIZER_JSON, or the copy in
    /// the development venv that Fixtures/reference_tokenizer.py uses.
    static let tokenizerJSONPath: String? = {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["M3_TOKENIZER_JSON"] { candidates.append(env) }
        candidates.append(
            "/work/venv/lib/python3.11/site-packages/semantra_multilingual/assets/multilingual-e5-small/tokenizer.json")
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }()

    /// The tokenizer with Hugging Face's exact double scores, when tokenizer.json is available.
    static let exactTokenizer: XLMRobertaTokenizer? = tokenizerJSONPath.map {
        try! XLMRobertaTokenizer(modelPath: modelPath, tokenizerJSONPath: $0)
    }
}

final class M3TokenizerTests: XCTestCase {
    typealias F = TokenizerFixtures

    private func mismatches(_ tokenizer: XLMRobertaTokenizer, _ entries: [F.Entry]) -> [String] {
        var failures: [String] = []
        for entry in entries {
            let ids = tokenizer.encode(entry.text, maxLength: entry.max_length ?? 1 << 30)
            if ids != entry.ids {
                let first = zip(ids, entry.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ids.count, entry.ids.count)
                failures.append(
                    "\(String(reflecting: String(entry.text.prefix(120)))) max_length=\(entry.max_length.map(String.init) ?? "-") "
                        + "first difference at \(first): expected \(Array(entry.ids[first...].prefix(8))) "
                        + "got \(Array(ids[first...].prefix(8)))")
            }
        }
        return failures
    }

    func testFixtureHasEnoughData() {
        let gettext = F.entries.filter { $0.source?.hasPrefix("gettext:") == true }
        XCTAssertGreaterThanOrEqual(gettext.count, 5000)
        XCTAssertGreaterThan(Set(gettext.compactMap { $0.source }).count, 150)
        XCTAssertTrue(F.entries.contains { $0.max_length == 128 })
        XCTAssertTrue(F.entries.contains { $0.max_length == 16 })
        XCTAssertTrue(F.entries.contains { $0.max_length == nil && $0.ids.count > 8192 })
    }

    /// Every fixture string gives exactly the Hugging Face ids (the few exact-tie strings
    /// need tokenizer.json's scores and are checked in testExactTiesWithTokenizerJSON).
    func testIdsMatchHuggingFace() {
        let entries = F.entries.filter { $0.tie != true }
        let failures = mismatches(F.tokenizer, entries)
        XCTAssert(
            failures.isEmpty,
            "\(failures.count) of \(entries.count) strings differ from Hugging Face:\n"
                + failures.prefix(10).joined(separator: "\n"))
    }

    func testExactTiesWithTokenizerJSON() throws {
        guard let exact = F.exactTokenizer else {
            throw XCTSkip("tokenizer.json not found (set M3_TOKENIZER_JSON)")
        }
        let failures = mismatches(exact, F.entries)
        XCTAssert(
            failures.isEmpty,
            "\(failures.count) of \(F.entries.count) strings differ from Hugging Face with tokenizer.json scores:\n"
                + failures.prefix(10).joined(separator: "\n"))
        // Without the exact scores, the tie strings really do come out differently
        // (otherwise they would not test anything).
        let ties = F.entries.filter { $0.tie == true }
        XCTAssertFalse(ties.isEmpty)
        XCTAssertEqual(mismatches(F.tokenizer, ties).count, ties.count)
    }

    func testTruncation() {
        let tok = F.tokenizer
        let long = F.entries.first { $0.max_length == nil && $0.ids.count > 8192 }!
        let full = tok.encode(long.text, maxLength: 1 << 30)
        XCTAssertEqual(full, long.ids)
        for maxLength in [2, 3, 4, 16, 128, 8192, full.count - 1, full.count, full.count + 5] {
            let ids = tok.encode(long.text, maxLength: maxLength)
            let expected = Array(full.prefix(min(maxLength, full.count) - 1)) + [XLMRobertaTokenizer.eos]
            XCTAssertEqual(ids, expected, "maxLength \(maxLength)")
            let (withOffsets, offsets) = tok.encodeWithOffsets(long.text, maxLength: maxLength)
            XCTAssertEqual(withOffsets, expected)
            XCTAssertEqual(offsets.count, expected.count)
        }
        XCTAssertEqual(tok.encode(long.text).count, 8192)  // default maxLength
        XCTAssertEqual(tok.encode("Hello world", maxLength: 2), [0, 2])
        XCTAssertEqual(tok.encode("Hello world", maxLength: 0), [0, 2])
        XCTAssertEqual(tok.encode("Hello world", maxLength: 3), [0, 35378, 2])
        XCTAssertEqual(tok.encode("a<mask>b", maxLength: 4), [0, 10, 250001, 2])
        XCTAssertEqual(tok.encode("<s><s><s>", maxLength: 4), [0, 0, 0, 2])
    }

    func testIdMapping() {
        let tok = F.tokenizer
        XCTAssertEqual(tok.vocabularySize, 250002)
        XCTAssertEqual(
            [XLMRobertaTokenizer.bos, XLMRobertaTokenizer.pad, XLMRobertaTokenizer.eos, XLMRobertaTokenizer.unk,
             XLMRobertaTokenizer.mask], [0, 1, 2, 3, 250001])
        XCTAssertEqual(tok.encode(""), [0, 2])
        XCTAssertEqual(tok.encode("Hello world"), [0, 35378, 8999, 2])
        XCTAssertEqual(tok.encode("Hello world "), [0, 35378, 8999, 6, 2])  // trailing "▁"
        XCTAssertEqual(tok.encode(" "), [0, 6, 2])
        XCTAssertEqual(tok.encode("<s></s><pad><unk><mask>"), [0, 0, 2, 1, 3, 250001, 2])
        XCTAssertEqual(tok.encode("x<s>y"), [0, 1022, 0, 113, 2])
        XCTAssertEqual(tok.encode("hello <mask> there"), [0, 33600, 31, 6, 250001, 2685, 2])
        XCTAssertEqual(tok.encode("a </s> b"), [0, 10, 6, 2, 876, 2])
        XCTAssertEqual(tok.encode(" <pad>"), [0, 6, 1, 2])
        // Unknown characters map to <unk>; a run of them is one <unk>.
        XCTAssertEqual(tok.encode("a\u{10FFFD}b"), [0, 10, 3, 275, 2])
        XCTAssertEqual(tok.encode("a\u{10FFFD}\u{10FFFC}b"), [0, 10, 3, 275, 2])
        // Full-width special tokens normalise to the special strings, which the Unigram
        // model then matches as vocabulary entries.
        XCTAssertEqual(tok.encode("＜s＞"), [0, 6, 0, 2])
        XCTAssertEqual(tok.encode("＜mask＞"), [0, 6, 250001, 2])
        let all = F.entries.flatMap(\.ids)
        XCTAssertTrue(all.allSatisfy { $0 >= 0 && $0 < 250002 })
    }

    func testEmbeddedNUL() {
        let tok = F.tokenizer
        XCTAssertEqual(tok.encode("\u{0}"), [0, 6, 3, 2])
        XCTAssertEqual(tok.encode("a\u{0}b"), [0, 10, 3, 275, 2])
        let (ids, offsets) = tok.encodeWithOffsets("a\u{0}b")
        XCTAssertEqual(ids, [0, 10, 3, 275, 2])
        XCTAssertEqual(offsets, [0..<0, 0..<1, 1..<2, 2..<3, 3..<3])
    }

    func testOffsetsExamples() {
        let tok = F.tokenizer
        func check(_ text: String, _ ids: [Int32], _ offsets: [Range<Int>], file: StaticString = #filePath,
                   line: UInt = #line) {
            let got = tok.encodeWithOffsets(text)
            XCTAssertEqual(got.ids, ids, file: file, line: line)
            XCTAssertEqual(got.offsets, offsets, file: file, line: line)
        }
        check("Hello world", [0, 35378, 8999, 2], [0..<0, 0..<5, 5..<11, 11..<11])
        check(" Hello  world ", [0, 35378, 8999, 6, 2], [0..<0, 0..<6, 6..<13, 13..<14, 14..<14])
        check("x<s>y", [0, 1022, 0, 113, 2], [0..<0, 0..<1, 1..<4, 4..<5, 5..<5])
        // "é" as e + U+0301 is one grapheme: one token covering both scalars (3 bytes).
        check("e\u{301}", [0, 393, 2], [0..<0, 0..<3, 3..<3])
        // CJK text gets a separate prepended "▁" token with an empty range.
        let cjk = tok.encodeWithOffsets("正在更新")
        XCTAssertEqual(cjk.ids.count, 5)
        XCTAssertEqual(cjk.offsets[1], 0..<0)
        XCTAssertEqual(cjk.offsets[2], 0..<6)
        XCTAssertEqual(cjk.offsets[3], 6..<12)
    }

    /// Offsets on every fixture string: one per id, <s>/</s> empty at the ends, literal
    /// special tokens exactly their text, ranges within bounds and non-decreasing, and every
    /// character that does not normalise away (whitespace, controls, format characters) is
    /// covered by some token.
    func testOffsetsProperties() {
        let tok = F.tokenizer
        var failures: [String] = []
        let specials: [Int32: String] = [0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 250001: "<mask>"]
        for entry in F.entries {
            let text = entry.text
            let bytes = Array(text.utf8)
            let n = bytes.count
            let (ids, offsets) = tok.encodeWithOffsets(text, maxLength: entry.max_length ?? 1 << 30)
            XCTAssertEqual(ids, tok.encode(text, maxLength: entry.max_length ?? 1 << 30))
            func fail(_ why: String) { failures.append("\(String(reflecting: String(text.prefix(60)))): \(why)") }
            guard offsets.count == ids.count, ids.count >= 2 else { fail("count"); continue }
            if offsets.first != 0..<0 || offsets.last != n..<n { fail("ends \(offsets.first!) \(offsets.last!)") }
            var previous = 0..<0
            var covered = [Bool](repeating: false, count: n)
            for (k, (id, range)) in zip(ids, offsets).enumerated() {
                if range.lowerBound < 0 || range.upperBound > n { fail("out of bounds \(range)"); break }
                if range.lowerBound < previous.lowerBound || range.upperBound < previous.upperBound {
                    fail("not monotone at \(k): \(previous) then \(range)")
                    break
                }
                previous = range
                if k > 0, k < ids.count - 1, let special = specials[id], !range.isEmpty,
                   String(decoding: bytes[range], as: UTF8.self) != special,
                   // normalised specials (full-width "＜s＞" etc.) and fused unknowns
                   !(id == 3 || String(decoding: bytes[range], as: UTF8.self).unicodeScalars.contains { $0.value >= 0x80 })
                {
                    fail("special \(id) at \(range)")
                }
                for i in range { covered[i] = true }
            }
            if entry.max_length == nil {
                var offset = 0
                for scalar in text.unicodeScalars {
                    let length = String(scalar).utf8.count
                    defer { offset += length }
                    if covered[offset] { continue }
                    let p = scalar.properties
                    if p.isWhitespace || [.control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator]
                        .contains(p.generalCategory) || scalar == "\u{2581}" || scalar == "\u{FFFD}"
                    {
                        continue
                    }
                    fail("character U+\(String(scalar.value, radix: 16)) at byte \(offset) not covered")
                    break
                }
            }
        }
        XCTAssert(failures.isEmpty, "\(failures.count) offset failures:\n" + failures.prefix(10).joined(separator: "\n"))
    }

    func testMissingAndCorruptModel() throws {
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: "/nonexistent/sentencepiece.bpe.model")) { error in
            guard case let TokenizerError.cannotLoadModel(path, message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(path, "/nonexistent/sentencepiece.bpe.model")
            XCTAssertFalse(message.isEmpty)
            XCTAssertTrue("\(error)".contains("/nonexistent/sentencepiece.bpe.model"))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let corrupt = dir.appendingPathComponent("corrupt.model")
        try Data("this is not a protobuf \u{0}\u{1}\u{2}".utf8).write(to: corrupt)
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: corrupt.path)) { error in
            guard case TokenizerError.cannotLoadModel(corrupt.path, let message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertFalse(message.isEmpty)
        }
        // A truncated copy of the real model.
        let truncated = dir.appendingPathComponent("truncated.model")
        let model = try Data(contentsOf: URL(fileURLWithPath: F.modelPath))
        try model.prefix(model.count / 2).write(to: truncated)
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: truncated.path))
        // tokenizer.json problems.
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: F.modelPath, tokenizerJSONPath: dir.appendingPathComponent("none.json").path)) { error in
            guard case TokenizerError.cannotLoadScores = error else { return XCTFail("unexpected \(error)") }
        }
        let badJSON = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model": {"type": "Unigram", "vocab": [["<s>", 0.0], ["<pad>", 0.0], ["oops", -1.0]]}}"#.utf8)
            .write(to: badJSON)
        XCTAssertThrowsError(try XLMRobertaTokenizer(modelPath: F.modelPath, tokenizerJSONPath: badJSON.path)) { error in
            guard case let TokenizerError.cannotLoadScores(_, message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertTrue(message.contains("oops"), message)
        }
    }

    func testConcurrentUse() {
        let tok = F.tokenizer
        let entries = Array(F.entries.prefix(2000))
        let expected = entries.map { tok.encodeWithOffsets($0.text, maxLength: $0.max_length ?? 1 << 30) }
        final class Counter: @unchecked Sendable {
            let lock = NSLock()
            var value = 0
            func add(_ n: Int) { lock.lock(); value += n; lock.unlock() }
        }
        let differences = Counter()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            var local = 0
            for (k, entry) in entries.enumerated() where k % 2 == worker % 2 {
                let got = tok.encodeWithOffsets(entry.text, maxLength: entry.max_length ?? 1 << 30)
                if got.ids != expected[k].ids || got.offsets != expected[k].offsets { local += 1 }
            }
            differences.add(local)
        }
        XCTAssertEqual(differences.value, 0)
    }
}
