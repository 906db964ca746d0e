import Foundation
import M3Search
@testable import M3Server
import XCTest

/// `"filter"` in POST /search (issue 14 item 1): results equal the exhaustive ranking of the
/// matching documents, an empty match is an empty answer, and malformed filters are 400s.
final class FilterAPITests: XCTestCase {
    func testFilteredSearchEqualsRestrictedExhaustiveRanking() async throws {
        let docs = try corpusDocuments(30, characters: 800)
        let s = try await TestServer.start(documents: docs)
        defer { s.removeFiles() }
        let query = "exceptions and error handling"
        let e = try s.index.model.encode([query], options: EncodeOptions(maxLength: 512))[0]
        let all = try s.index.exhaustiveSearch(encoded: e, options: SearchOptions(k: 100_000, groupByDocument: false))
        let names = docs.map { $0.metadata!["source"]! }
        // 100%, 30%, 3% (one document of 30) and none.
        let cases: [([String: Any], (String) -> Bool)] = [
            (["path": ["corpus/**"]], { _ in true }),
            (["path": names.enumerated().filter { $0.offset % 3 == 0 }.map { "corpus/" + $0.element }],
             { id in names.firstIndex(of: String(id.dropFirst(7)))! % 3 == 0 }),
            (["metadata": ["source": names[17]]], { $0 == "corpus/" + names[17] }),
            (["path": ["corpus/*"], "metadata": ["source": names[4]], "modified_after": "2000-01-01"], { $0 == "corpus/" + names[4] }),
            (["modified_before": "2000-01-01T00:00:00Z"], { _ in false }),
        ]
        for (filter, allows) in cases {
            let r = try await s.client.search(["query": query, "k": 5, "filter": filter, "explain": true])
            XCTAssertEqual(r.status, 200, r.text)
            let results = try XCTUnwrap(r.json?["results"]?.array, r.text)
            var seen = Set<String>()
            let want = all.filter { allows($0.path) && seen.insert($0.path).inserted }.prefix(5)
            XCTAssertEqual(results.compactMap { $0["path"]?.string }, want.map(\.path), "\(filter)")
            XCTAssertEqual(results.compactMap { $0["chunk"]?.int }, want.map(\.chunk), "\(filter)")
            XCTAssertEqual(r.json?["explain"]?["filter"]?["documents"]?.int, docs.filter { allows($0.id) }.count, "\(filter)")
        }
        try await s.stop()
    }

    func testMalformedFiltersAre400() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(3, characters: 300))
        defer { s.removeFiles() }
        let cases: [(String, [String])] = [
            (#"{"query":"x","filter":{"tags":["a"]}}"#, ["unknown field", "filter.tags"]),
            (#"{"query":"x","filter":{"path":"*.md"}}"#, ["filter.path"]),
            (#"{"query":"x","filter":{"path":[""]}}"#, ["filter.path[0]"]),
            (#"{"query":"x","filter":{"metadata":{"n":1}}}"#, ["filter.metadata"]),
            (#"{"query":"x","filter":{"modified_after":"last week"}}"#, ["filter.modified_after", "ISO 8601"]),
            (#"{"query":"x","filter":[]}"#, ["filter"]),
        ]
        for (body, words) in cases {
            let r = try await s.client.send("POST", "/search", body: Data(body.utf8))
            XCTAssertEqual(r.status, 400, body)
            let message = r.json?["error"]?.string ?? ""
            for w in words { XCTAssertTrue(message.contains(w), "\(body): \(message)") }
        }
        try await s.stop()
    }
}
