import Foundation
import M3Search
@testable import M3Server
import XCTest

/// The JSON API end to end over real HTTP: search, add, replace, delete, health, metrics.
final class ServerAPITests: XCTestCase {
    /// POST /search answers what the library answers for the same options: the request's
    /// fields reach `SearchOptions` (k, mode, fusion, weights, candidates, ef_search, chunks).
    func testSearchMatchesLibrary() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(24))
        defer { s.removeFiles() }
        let query = "how does the with statement work"
        let cases: [([String: Any], SearchOptions)] = [
            ([:], SearchOptions()),
            (["k": 3], SearchOptions(k: 3)),
            (["k": 5, "mode": "dense"], SearchOptions(k: 5, mode: .dense)),
            (["k": 4, "mode": "sparse", "candidates": 20], SearchOptions(k: 4, mode: .sparse, candidates: 20)),
            (["k": 6, "fusion": "rrf", "weights": ["dense": 1, "sparse": 0.5, "colbert": 0]],
             SearchOptions(k: 6, weights: FusionWeights(dense: 1, sparse: 0.5, colbert: 0), fusion: .rrf)),
            (["k": 8, "chunks": true, "ef_search": 32, "candidates": 16], SearchOptions(k: 8, candidates: 16, groupByDocument: false, efSearch: 32)),
        ]
        for (fields, options) in cases {
            var body = fields
            body["query"] = query
            let r = try await s.client.search(body)
            XCTAssertEqual(r.status, 200, r.text)
            let results = try XCTUnwrap(r.json?["results"]?.array, r.text)
            let expected = try await s.index.search(query, options: options).results
            XCTAssertEqual(results.count, expected.count, "\(fields)")
            for (got, want) in zip(results, expected) {
                XCTAssertEqual(got["rank"]?.int, want.rank)
                XCTAssertEqual(got["path"]?.string, want.path)
                XCTAssertEqual(got["chunk"]?.int, want.chunk)
                // Floats print as their shortest round-trip form: parsing gives the same Float.
                XCTAssertEqual(got["score"]?.number.map(Float.init), want.score)
                XCTAssertEqual(got["scores"]?["dense"]?.number.map(Float.init), want.dense)
                XCTAssertEqual(got["scores"]?["sparse"]?.number.map(Float.init), want.sparse)
                XCTAssertEqual(got["scores"]?["colbert"]?.number.map(Float.init), want.colbert)
                XCTAssertEqual(got["metadata"]?["source"]?.string, want.metadata?["source"])
            }
            if options.groupByDocument {
                XCTAssertEqual(Set(results.compactMap { $0["path"]?.string }).count, results.count, "one result per document")
            }
            XCTAssertNil(r.json?["explain"], "explain only when asked for")
        }
        // A request without weights fuses with the index's saved weights (`tune --save`).
        let saved = FusionWeights(dense: 0.1, sparse: 0.8, colbert: 0.1)
        try s.index.setDefaultWeights(saved)
        let r = try await s.client.search(["query": query, "k": 5])
        let got = try XCTUnwrap(r.json?["results"]?.array, r.text)
        let want = try await s.index.search(query, options: SearchOptions(k: 5, weights: saved)).results
        let builtIn = try await s.index.search(query, options: SearchOptions(k: 5, weights: FusionWeights())).results
        XCTAssertEqual(got.compactMap { $0["score"]?.number.map(Float.init) }, want.map(\.score))
        XCTAssertNotEqual(want.map(\.score), builtIn.map(\.score), "the saved weights must change the fused scores")
        let explained = try await s.client.search(["query": query, "explain": true, "k": 3, "candidates": 7])
        XCTAssertEqual(explained.json?["explain"]?["dense_candidates"]?.int, 7)
        XCTAssertGreaterThan(explained.json?["explain"]?["encode_ms"]?.number ?? 0, 0)
        try await s.stop()
    }

    /// Add (with metadata), replace, delete by id (slashes encoded or not); the index
    /// stays sound and every change shows in search results and in /health.
    func testAddReplaceDelete() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(10))
        defer { s.removeFiles() }
        var health = try await s.client.send("GET", "/health")
        XCTAssertEqual(health.json?["documents"]?.int, 10)
        XCTAssertEqual(health.json?["status"]?.string, "ok")

        let added = try await s.client.send("POST", "/documents", json: ["documents": [
            ["id": "notes/light house.md", "text": "Lighthouses guide ships along the rocky coast at night.", "metadata": ["lang": "en"]],
            ["id": "a/b/c.txt", "text": "Volcanoes erupt molten lava and ash."],
        ]])
        XCTAssertEqual(added.status, 200, added.text)
        XCTAssertEqual(added.json?["added"]?.int, 2)
        XCTAssertEqual(added.json?["documents"]?.int, 12)
        XCTAssertEqual(added.json?["chunks"]?.int, s.index.chunkCount)
        XCTAssertEqual(s.index.documentCount, 12)

        // Every document comes back when k and the candidates cover the whole index.
        func all() async throws -> [String: JSON] {
            let r = try await s.client.search(["query": "lighthouse ships coast", "k": 100, "candidates": 1000])
            XCTAssertEqual(r.status, 200, r.text)
            var byPath: [String: JSON] = [:]
            for result in r.json?["results"]?.array ?? [] { byPath[result["path"]?.string ?? ""] = result }
            return byPath
        }
        var results = try await all()
        XCTAssertEqual(results.count, 12)
        XCTAssertEqual(results["notes/light house.md"]?["metadata"], .object(["lang": .string("en")]))
        XCTAssertEqual(results["a/b/c.txt"]?["metadata"], .null)

        // Same id: replaced, not added; the same id twice in one request: the last one wins.
        let replaced = try await s.client.send("POST", "/documents", json: ["documents": [
            ["id": "notes/light house.md", "text": "Phares.", "metadata": ["lang": "xx"]],
            ["id": "notes/light house.md", "text": "Phares et navires.", "metadata": ["lang": "fr"]],
        ]])
        XCTAssertEqual(replaced.json?["added"]?.int, 1)
        XCTAssertEqual(replaced.json?["documents"]?.int, 12)
        results = try await all()
        XCTAssertEqual(results["notes/light house.md"]?["metadata"]?["lang"]?.string, "fr")
        XCTAssertEqual(results["notes/light house.md"]?["snippet"]?.string, "Phares et navires.")

        let deleted = try await s.client.send("DELETE", "/documents/notes%2Flight%20house.md")
        XCTAssertEqual(deleted.status, 200, deleted.text)
        XCTAssertEqual(deleted.json?["deleted"]?.string, "notes/light house.md")
        XCTAssertEqual(deleted.json?["documents"]?.int, 11)
        let again = try await s.client.send("DELETE", "/documents/notes%2Flight%20house.md")
        XCTAssertEqual(again.status, 404)
        XCTAssertTrue(again.error?.contains("notes/light house.md") ?? false, again.text)
        let raw = try await s.client.send("DELETE", "/documents/a/b/c.txt")
        XCTAssertEqual(raw.status, 200, raw.text)
        results = try await all()
        XCTAssertEqual(results.count, 10)
        XCTAssertNil(results["a/b/c.txt"])
        health = try await s.client.send("GET", "/health")
        XCTAssertEqual(health.json?["documents"]?.int, 10)
        XCTAssertEqual(health.json?["chunks"]?.int, s.index.chunkCount)

        try await s.stop()
        let report = try s.index.check()
        XCTAssertTrue(report.isSound, "\(report.problems)")
        XCTAssertEqual(report.documents, 10)
    }

    /// Counters move by exactly the requests made, histograms count every request with
    /// cumulative buckets, gauges hold the index size and the load times given.
    func testMetrics() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(6))
        defer { s.removeFiles() }
        let before = PrometheusText(try await s.client.send("GET", "/metrics").text)
        for q in ["exceptions", "generators", "classes"] {
            let r = try await s.client.search(["query": q, "k": 2])
            XCTAssertEqual(r.status, 200)
        }
        try await s.client.search(["query": ""])
        try await s.client.search(["query": "x", "k": 0])
        try await s.client.send("POST", "/documents", json: ["documents": [["id": "new.txt", "text": "A new document."]]])
        try await s.client.send("DELETE", "/documents/missing.txt")
        try await s.client.send("GET", "/no-such-route")
        let response = try await s.client.send("GET", "/metrics")
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.header("Content-Type")?.hasPrefix("text/plain") ?? false)
        let after = PrometheusText(response.text)

        func delta(_ name: String, _ labels: [String: String]) -> Double { after.value(name, labels) - before.value(name, labels) }
        let requests = "m3search_http_requests_total"
        XCTAssertEqual(delta(requests, ["route": "/search", "method": "POST", "status": "200"]), 3)
        XCTAssertEqual(delta(requests, ["route": "/search", "method": "POST", "status": "400"]), 2)
        XCTAssertEqual(delta(requests, ["route": "/documents", "method": "POST", "status": "200"]), 1)
        XCTAssertEqual(delta(requests, ["route": "/documents/{id}", "method": "DELETE", "status": "404"]), 1)
        XCTAssertEqual(delta(requests, ["route": "unmatched", "method": "GET", "status": "404"]), 1)
        // The first scrape is counted once its response is written, so it shows here.
        XCTAssertEqual(delta(requests, ["route": "/metrics", "method": "GET", "status": "200"]), 1)

        let latency = "m3search_http_request_duration_seconds"
        XCTAssertEqual(delta(latency + "_count", ["route": "/search"]), 5)
        let buckets = after.all(latency + "_bucket").filter { $0.labels["route"] == "/search" }
        XCTAssertGreaterThanOrEqual(buckets.count, 20, "enough buckets to read a P95")
        let ordered = buckets.sorted { (Double($0.labels["le"]!) ?? .infinity) < (Double($1.labels["le"]!) ?? .infinity) }
        XCTAssertEqual(ordered.map(\.value), ordered.map(\.value).sorted(), "buckets are cumulative")
        XCTAssertEqual(ordered.last?.labels["le"], "+Inf")
        XCTAssertEqual(ordered.last?.value, after.value(latency + "_count", ["route": "/search"]))

        XCTAssertEqual(delta("m3search_query_encode_duration_seconds_count", [:]), 3)
        XCTAssertGreaterThan(delta("m3search_query_encode_duration_seconds_sum", [:]), 0)
        for stage in ["candidates", "score", "fuse"] {
            XCTAssertEqual(delta("m3search_search_stage_duration_seconds_count", ["stage": stage]), 3, stage)
        }
        XCTAssertEqual(delta("m3search_write_duration_seconds_count", ["operation": "add"]), 1)
        XCTAssertEqual(after.value("m3search_index_documents"), 7)
        XCTAssertEqual(after.value("m3search_index_chunks"), Double(s.index.chunkCount))
        XCTAssertEqual(after.value("m3search_model_load_seconds"), 0.25)
        XCTAssertEqual(after.value("m3search_index_load_seconds"), 0.125)
        XCTAssertEqual(after.value("m3search_http_requests_in_flight"), 1, "only the scrape itself")
        for queue in ["search", "write"] {
            XCTAssertTrue(after.samples.contains { $0.name == "m3search_queue_depth" && $0.labels["queue"] == queue }, queue)
            XCTAssertEqual(after.value("m3search_queue_depth", ["queue": queue]), 0, "\(queue) queue drained")
        }
        try await s.stop()
    }
}
