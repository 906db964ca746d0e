import Foundation
import M3Search
@testable import M3Server
import XCTest

/// Searches keep being answered while a write encodes and commits, and every answer is
/// either the whole state before the write or the whole state after it.
final class ConcurrencyTests: XCTestCase {
    func testFiftySearchesDuringAWrite() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(20))
        defer { s.removeFiles() }
        // k and candidates cover every document and chunk, so the answer lists the whole
        // index: 20 documents before the write, 20 + the new ones after, nothing in between.
        let query: [String: Any] = ["query": "exception handling with try and finally", "k": 500, "candidates": 5000]
        func ranking(_ r: HTTPResult) -> [String] {
            (r.json?["results"]?.array ?? []).map { "\($0["path"]?.string ?? "?")#\($0["chunk"]?.int ?? -1) \($0["score"]?.number ?? .nan)" }
        }
        let before = ranking(try await s.client.search(query))
        XCTAssertEqual(before.count, 20)

        let bulk = try corpusDocuments(80, characters: 1200, idPrefix: "bulk-a/") + corpusDocuments(80, characters: 900, idPrefix: "bulk-b/")
        let writeStarted = Date()
        let writeBody = try JSONSerialization.data(withJSONObject: ["documents": bulk.map { ["id": $0.id, "text": $0.text] }])
        async let write = { (try await s.client.send("POST", "/documents", body: writeBody), Date()) }()
        // Start the searches once the write is running.
        while PrometheusText(try await s.client.send("GET", "/metrics").text).value("m3search_queue_depth", ["queue": "write"]) < 1,
              Date().timeIntervalSince(writeStarted) < 10 {
            try await Task.sleep(for: .milliseconds(5))
        }
        let queryBody = try JSONSerialization.data(withJSONObject: query)
        let searches = try await withThrowingTaskGroup(of: (HTTPResult, Date).self) { group in
            // Spread over ~2.5 s, so that some run while the write encodes, some while it
            // commits, and (on a fast machine) some after it.
            for i in 0..<50 {
                group.addTask {
                    try await Task.sleep(for: .milliseconds(50 * i))
                    return (try await s.client.send("POST", "/search", body: queryBody), Date())
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let (written, writeFinished) = try await write
        XCTAssertEqual(written.status, 200, written.text)
        XCTAssertEqual(written.json?["documents"]?.int, 20 + bulk.count)
        let after = ranking(try await s.client.search(query))
        XCTAssertEqual(after.count, 20 + bulk.count)

        var sawBefore = 0, sawAfter = 0
        for (result, _) in searches {
            XCTAssertEqual(result.status, 200, result.text)
            let r = ranking(result)
            if r == before { sawBefore += 1 } else if r == after { sawAfter += 1 } else { XCTFail("a search saw a state between before and after: \(r.count) results") }
        }
        let finishedDuringWrite = searches.filter { $0.1 < writeFinished }.count
        print("50 searches during a \(String(format: "%.2f", writeFinished.timeIntervalSince(writeStarted))) s write: \(finishedDuringWrite) finished before the write did; \(sawBefore) saw the state before it, \(sawAfter) after")
        XCTAssertEqual(sawBefore + sawAfter, 50)
        XCTAssertGreaterThan(finishedDuringWrite, 0, "searches must not wait for the whole write")
        try await s.stop()
        XCTAssertTrue(try s.index.check().isSound)
    }
}
