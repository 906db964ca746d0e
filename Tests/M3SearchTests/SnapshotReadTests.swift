import Foundation
@testable import M3Search
import XCTest

/// Searches during writes (issue 13, item 4): a search running while the writer commits
/// answers exactly what the same search answers alone on one committed state, the one
/// before or after some write of the run, never a mix of two and never an error.
///
/// The reference is a second index, built from the same writes one at a time with nothing
/// running beside it, searched after each write: the same commits give the same chunk ids,
/// graph and postings, so its answers are what each committed state answers alone.
final class SnapshotReadTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-snapshot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// One commit of the run.
    enum Write {
        case add([DocumentInput])
        case remove([String])
    }

    static let words = ("river ocean mountain forest desert harbour engine valve piston circuit voltage signal "
        + "bread butter cheese orchard apple pear violin cello rhythm melody planet comet orbit telescope "
        + "glacier volcano canyon meadow lantern compass anchor sail").split(separator: " ").map(String.init)

    /// A deterministic text of `n` words drawn by `seed`.
    static func text(_ seed: Int, words n: Int = 18) -> String {
        var x = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<n).map { _ in
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return words[Int(x >> 33) % words.count]
        }.joined(separator: " ")
    }

    static func docs(_ ids: Range<Int>, version: Int = 0) -> [DocumentInput] {
        ids.map { DocumentInput(id: "doc-\($0)", text: text($0 * 31 + version * 7919), metadata: ["v": "\(version)"]) }
    }

    static let queries: [(String, SearchOptions)] = [
        ("river ocean harbour anchor", SearchOptions(k: 5, candidates: 12)),
        ("violin cello melody", SearchOptions(k: 8, candidates: 20, groupByDocument: false)),
        ("planet comet telescope orbit", SearchOptions(k: 6, mode: .dense, candidates: 10)),
        ("bread cheese apple", SearchOptions(k: 6, mode: .sparse, candidates: 10)),
        ("engine piston voltage", SearchOptions(k: 6, candidates: 15, filter: SearchFilter(paths: ["doc-1*"]))),
    ]

    func openIndex(_ name: String) throws -> SearchIndex {
        try SearchIndex(path: dir.appendingPathComponent(name).path, model: try BGEM3(folder: fixture("models/tiny-safetensors")),
                        options: IndexOptions(maxLength: 12, overlap: 2))
    }

    func apply(_ write: Write, to index: SearchIndex) throws {
        switch write {
        case .add(let docs): try index.add(docs)
        case .remove(let ids): try index.remove(ids)
        }
    }

    /// What each query answers, by query index (an error is an answer too: it must never happen).
    func answers(_ index: SearchIndex) -> [String] {
        Self.queries.map { q, options in
            do { return "\(try index.search(q, options: options).results)" } catch { return "error: \(error)" }
        }
    }

    /// Runs `writes` on one index while two threads search it, and checks every answer
    /// against the reference's answer at a commit published during that search.
    func checkSearchesDuringWrites(initial: [DocumentInput], writes: [Write], file: StaticString = #filePath, line: UInt = #line) throws {
        // The reference: each committed state alone.
        let reference = try openIndex("reference.m3index")
        try reference.add(initial)
        var expected: [Int64: [String]] = [reference.publishedCommit: answers(reference)]
        for w in writes {
            try apply(w, to: reference)
            expected[reference.publishedCommit] = answers(reference)
        }
        XCTAssertEqual(expected.count, writes.count + 1, "every write is one commit", file: file, line: line)

        let index = try openIndex("live.m3index")
        try index.add(initial)
        XCTAssertEqual(answers(index), expected[index.publishedCommit], "before the writes", file: file, line: line)

        final class Log: @unchecked Sendable {
            let lock = NSLock()
            var done = false
            var writeError: Error?
            /// (query, first commit published while it ran, last, answer)
            var seen: [(Int, Int64, Int64, String)] = []
        }
        let log = Log()
        concurrently(3) { thread in
            if thread == 0 {
                defer { log.lock.withLock { log.done = true } }
                do { for w in writes { try apply(w, to: index) } } catch { log.lock.withLock { log.writeError = error } }
                return
            }
            var i = thread
            while !log.lock.withLock({ log.done }) {
                let q = i % Self.queries.count
                i += 1
                let before = index.publishedCommit
                let answer: String
                do { answer = "\(try index.search(Self.queries[q].0, options: Self.queries[q].1).results)" } catch { answer = "error: \(error)" }
                let after = index.publishedCommit
                log.lock.withLock { log.seen.append((q, before, after, answer)) }
            }
        }
        XCTAssertNil(log.writeError, file: file, line: line)
        XCTAssertGreaterThan(log.seen.count, writes.count, "searches ran during the writes", file: file, line: line)
        var mismatches = 0, during = 0
        for (q, before, after, answer) in log.seen {
            if after > before { during += 1 }
            // A search may also see the commit a writer has staged but not yet published
            // (its read transaction began after the COMMIT): after + 1.
            let allowed = (before...after + 1).compactMap { expected[$0]?[q] }
            if !allowed.contains(answer) {
                mismatches += 1
                if mismatches <= 3 {
                    XCTFail("query \(q) during commits \(before)…\(after) answered \(answer.prefix(300)), which no committed state answers",
                            file: file, line: line)
                }
            }
        }
        XCTAssertEqual(mismatches, 0, file: file, line: line)
        print("snapshot reads: \(log.seen.count) searches, \(during) spanning a commit, \(mismatches) mismatches")

        // The end state, also against a fresh index opened on the file.
        XCTAssertEqual(answers(index), expected[index.publishedCommit], file: file, line: line)
        let reopened = try SearchIndex(path: index.path, model: try BGEM3(folder: fixture("models/tiny-safetensors")),
                                       options: .existing(readOnly: true))
        XCTAssertEqual(answers(reopened), expected[index.publishedCommit], file: file, line: line)
    }

    func testSearchesDuringAddsMatchACommittedState() throws {
        let writes = (0..<12).map { b in Write.add(Self.docs(20 + b * 4 ..< 24 + b * 4)) }
        try checkSearchesDuringWrites(initial: Self.docs(0..<20), writes: writes)
    }

    /// Updates (same id, new text), removals and adds: chunks a search's state holds are
    /// deleted from the file by later commits while it runs.
    func testSearchesDuringDeletesAndUpdatesMatchACommittedState() throws {
        var writes: [Write] = []
        for b in 0..<24 {
            switch b % 3 {
            case 0: writes.append(.add(Self.docs(b ..< b + 4, version: b + 1)))            // replaces 4
            case 1: writes.append(.remove((0..<3).map { "doc-\((b * 2 + $0) % 40)" }))     // some already gone
            default: writes.append(.add(Self.docs(40 + b ..< 43 + b) + Self.docs(b + 5 ..< b + 6, version: 99)))
            }
        }
        try checkSearchesDuringWrites(initial: Self.docs(0..<30), writes: writes)
    }

    /// A state this process does not hold (another process committed): searches still
    /// answer, from the state they have, leaving out chunks the file no longer has rows for.
    func testSearchesOnAStateTheFileHasMovedPast() throws {
        let writer = try openIndex("shared.m3index")
        try writer.add(Self.docs(0..<20))
        let model = try BGEM3(folder: fixture("models/tiny-safetensors"))
        let reader = try SearchIndex(path: writer.path, model: model, options: IndexOptions(readOnly: true))
        try writer.remove((0..<10).map { "doc-\($0)" })
        try writer.add(Self.docs(20..<25))
        let gone = Set((0..<10).map { "doc-\($0)" }), new = Set((20..<25).map { "doc-\($0)" })
        for (q, options) in Self.queries {
            var o = options
            o.k = 30
            let results = try reader.search(q, options: o).results
            XCTAssertFalse(results.contains { gone.contains($0.path) }, "a removed document's chunk was returned")
            XCTAssertFalse(results.contains { new.contains($0.path) }, "a chunk the reader's state does not hold was returned")
            XCTAssertFalse(results.contains { $0.text.isEmpty })
        }
    }
}
