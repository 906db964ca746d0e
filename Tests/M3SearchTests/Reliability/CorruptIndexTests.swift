import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Damaged index files: truncated, bits flipped in the HNSW and posting blobs (and
/// anywhere in the file), foreign and newer files. Each damage is detected when the index
/// opens or by `check`, or it changes no answer; never a crash, never a silent wrong answer.
final class CorruptIndexTests: XCTestCase {
    static let queries = ["harbor lantern", "granite meadow", "copper falcon river", "File 7", "violet summit"]
    nonisolated(unsafe) static var base: (dir: URL, path: String, answers: [[String]])?
    let modelFolder = fixture("models/tiny-safetensors")
    nonisolated(unsafe) static var sharedModel: BGEM3?
    func model() throws -> BGEM3 {
        if let m = Self.sharedModel { return m }
        Self.sharedModel = try BGEM3(folder: modelFolder)
        return Self.sharedModel!
    }

    /// A checkpointed 30-document index and the answers it gives, built once.
    func baseIndex() throws -> (dir: URL, path: String, answers: [[String]]) {
        if let base = Self.base { return base }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-corrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("base.m3index").path
        let words = ["harbor", "lantern", "granite", "meadow", "copper", "falcon", "river", "violet", "summit", "cedar"]
        let answers: [[String]]
        do {
            let index = try SearchIndex(path: path, model: try model(), options: IndexOptions(maxLength: 32, overlap: 4))
            try index.add((0 ..< 30).map { i in
                DocumentInput(id: "doc\(i)", text: "File \(i): " + (0 ..< 12 + i % 20).map { words[($0 * 7 + i * 3) % words.count] }.joined(separator: " "))
            })
            try index.store.checkpoint()
            answers = try Self.answers(index)
        }
        Self.base = (dir, path, answers)
        return Self.base!
    }

    /// Top 5 chunks per query with scores rounded to 1e-3: a flipped low mantissa bit in a
    /// stored float that moves a score by less is not a different answer.
    static func answers(_ index: SearchIndex) throws -> [[String]] {
        try queries.map { q in
            try index.search(q, options: SearchOptions(k: 5, groupByDocument: false)).results
                .map { "\($0.chunkID) \(String(format: "%.3f", $0.score)) \($0.text.prefix(200))" }
        }
    }

    enum Outcome: String { case refusedAtOpen, reportedByCheck, sameAnswers, silentlyWrong }

    /// Opens a damaged copy read-only and classifies what happens.
    func classify(_ path: String, expected: [[String]]) throws -> (Outcome, String) {
        let index: SearchIndex
        do {
            index = try SearchIndex(path: path, model: try model(), options: .existing(readOnly: true))
        } catch let error as M3SearchError where error.underlying is StoreError {
            return (.refusedAtOpen, "\(error)")
        }
        let report = try index.check()
        if !report.isSound { return (.reportedByCheck, report.problems[0]) }
        let got = try? Self.answers(index)
        return got == expected ? (.sameAnswers, "") : (.silentlyWrong, "\(got ?? [])")
    }

    func damagedCopy(_ name: String) throws -> String {
        let base = try baseIndex()
        let path = base.dir.appendingPathComponent(name).path
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: base.path, toPath: path)
        return path
    }

    /// Flips one random bit in a random row's blob of `table.column`.
    func flipBlob(_ path: String, table: String, column: String, key: String, rng: inout SplitMix) throws {
        let db = try SQLiteConnection(path: path, mode: .readWrite)
        var rows: [(Int64, Data)] = []
        let s = try db.prepare("SELECT \(key), \(column) FROM \(table)")
        while try s.step() { rows.append((s.int(0), s.blob(1))) }
        let (id, blob) = rows[Int(rng.next() % UInt64(rows.count))]
        var bytes = [UInt8](blob)
        let bit = Int(rng.next() % UInt64(bytes.count * 8))
        bytes[bit / 8] ^= UInt8(1 << (bit % 8))
        try db.prepare("UPDATE \(table) SET \(column) = ? WHERE \(key) = ?").run([.blob(Data(bytes)), .int(id)])
    }

    func testFlippedBitsInHNSWAndPostingBlobsAreDetectedOrHarmless() throws {
        var rng = SplitMix(seed: 6)
        let expected = try baseIndex().answers
        for (table, column, key) in [("hnsw_nodes", "record", "slot"), ("postings", "data", "token_id")] {
            var tally: [Outcome: Int] = [:]
            for trial in 0 ..< 60 {
                let path = try damagedCopy("flip-\(table)-\(trial).m3index")
                try flipBlob(path, table: table, column: column, key: key, rng: &rng)
                let (outcome, detail) = try classify(path, expected: expected)
                tally[outcome, default: 0] += 1
                XCTAssertNotEqual(outcome, .silentlyWrong, "\(table) trial \(trial): \(detail)")
                try? FileManager.default.removeItem(atPath: path)
            }
            print("flip \(table).\(column): \(tally.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", "))")
            XCTAssertGreaterThan(tally[.refusedAtOpen, default: 0] + tally[.reportedByCheck, default: 0], 30)
        }
    }

    /// Found by Fuzz/FuzzIndex: a chunk row whose character range runs backwards trapped
    /// in `search` (Range with lowerBound > upperBound); one whose document is gone gave a
    /// result with an empty path. Both are now `StoreError.corrupt`, and `check` reports them.
    func testChunkRowsWithImpossibleRangesOrNoDocumentFailLoudly() throws {
        for (name, damage) in [("range", "UPDATE chunks SET char_start = char_end + 5"),
                               ("orphan", "PRAGMA foreign_keys=OFF; UPDATE chunks SET document_id = 999999")] {
            let path = try damagedCopy("rows-\(name).m3index")
            try SQLiteConnection(path: path, mode: .readWrite).execute(damage)
            let index = try SearchIndex(path: path, model: try model(), options: .existing(readOnly: true))
            XCTAssertFalse(try index.check().isSound, name)
            XCTAssertThrowsError(try index.search("harbor lantern", options: SearchOptions(k: 5))) { error in
                guard let e = error as? M3SearchError, e.kind == .corrupt, case StoreError.corrupt(_, let detail)? = e.underlying else {
                    return XCTFail("\(name): \(error)")
                }
                XCTAssertTrue(detail.contains("character range") || detail.contains("belongs to no document"), detail)
            }
        }
    }

    func testTruncatedFilesAreRefusedOrReported() throws {
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: try baseIndex().path)[.size] as? Int)
        for fraction in [0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
            let path = try damagedCopy("truncated.m3index")
            let length = Int(Double(size) * fraction)
            XCTAssertEqual(truncate(path, off_t(length)), 0)
            let (outcome, detail) = try classify(path, expected: try baseIndex().answers)
            // Cutting into the last page(s) may only remove free pages: then the answers
            // must not change. Any deeper cut must be noticed.
            XCTAssertNotEqual(outcome, .silentlyWrong, "truncated to \(length) of \(size) bytes: \(detail)")
            if fraction <= 0.9 {
                XCTAssertTrue(outcome == .refusedAtOpen || outcome == .reportedByCheck,
                              "truncated to \(length) of \(size) bytes: \(outcome) \(detail)")
            }
            print("truncated to \(length) of \(size) bytes: \(outcome.rawValue)")
            if length == 0 { XCTAssertTrue(detail.contains("No index at"), detail) }
        }
    }

    /// Random bits flipped anywhere in the file: SQLite's structures, the tables' rows and
    /// the vectors. Recorded, not all asserted: a flipped bit inside a stored float vector
    /// or a chunk's text is a valid value (the format keeps no checksums), see RELIABILITY.md.
    func testRandomBitFlipsInTheFileNeverCrash() throws {
        var rng = SplitMix(seed: 66)
        let expected = try baseIndex().answers
        var tally: [Outcome: Int] = [:]
        for trial in 0 ..< 100 {
            let path = try damagedCopy("raw-\(trial).m3index")
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let bit = Int(rng.next() % UInt64(bytes.count * 8))
            bytes[bit / 8] ^= UInt8(1 << (bit % 8))
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let (outcome, detail) = try classify(path, expected: expected)
            tally[outcome, default: 0] += 1
            if outcome == .silentlyWrong { print("raw flip of bit \(bit % 8) at byte \(bit / 8): \(detail.prefix(300))") }
            try? FileManager.default.removeItem(atPath: path)
        }
        print("raw bit flips: \(tally.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", "))")
        XCTAssertEqual(tally.values.reduce(0, +), 100)
    }

    func testForeignAndNewerFilesAreRefusedWithClearMessages() throws {
        let dir = try baseIndex().dir
        let foreign = dir.appendingPathComponent("foreign.sqlite").path
        try? FileManager.default.removeItem(atPath: foreign)
        try SQLiteConnection(path: foreign, mode: .create).execute("CREATE TABLE notes(x); INSERT INTO notes VALUES(1)")
        let run = try runM3Search(["check", "--index", foreign, "--model", modelFolder], stdin: "")
        XCTAssertEqual(run.status, 65)  // data error
        XCTAssertTrue(run.stderr.contains("is not an m3search index (SQLite database without m3search tables: notes)"), run.stderr)

        let newer = try damagedCopy("newer.m3index")
        try SQLiteConnection(path: newer, mode: .readWrite).execute("UPDATE m3_meta SET value = '99' WHERE key = 'format_version'")
        let q = try runM3Search(["query", "harbor", "--index", newer, "--model", modelFolder], stdin: "")
        XCTAssertEqual(q.status, 65)  // data error
        XCTAssertTrue(q.stderr.contains("has index format 99, newer than this m3search supports (\(IndexStore.formatVersion)). Upgrade m3search."), q.stderr)
        // The foreign file is never touched.
        XCTAssertThrowsError(try SearchIndex(path: foreign, model: try model()))
        XCTAssertEqual(try SQLiteConnection(path: foreign, mode: .readOnly).scalarInt("SELECT count(*) FROM notes"), 1)
    }

    override class func tearDown() {
        if let base { try? FileManager.default.removeItem(at: base.dir) }
        base = nil
    }
}
