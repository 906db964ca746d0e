import Foundation
import M3Search
@testable import M3Server
import XCTest

/// Dynamic batching: queries that arrive together share one forward pass, and each answers
/// exactly what it answers alone (same results, same scores to the last bit).
final class BatchingTests: XCTestCase {
    /// Distinct queries of different lengths and options (modes, weights, k, chunks, rrf).
    nonisolated(unsafe) static let queries: [(String, [String: Any], SearchOptions)] = {
        let texts = [
            "exception handling with try and finally", "generators", "how does the with statement work",
            "class inheritance and super", "list comprehension syntax", "unicode strings and bytes",
            "the global interpreter lock and threads in CPython explained at length for a long query",
            "lambda", "decorators wrap functions", "import system and packages", "asyncio event loop",
            "dictionary ordering", "file objects and context managers", "regular expressions", "pickle",
            "numbers: int float complex",
        ]
        let variants: [([String: Any], SearchOptions)] = [
            ([:], SearchOptions()),
            (["k": 3, "mode": "dense"], SearchOptions(k: 3, mode: .dense)),
            (["k": 4, "mode": "sparse"], SearchOptions(k: 4, mode: .sparse)),
            (["k": 5, "mode": "colbert", "chunks": true], SearchOptions(k: 5, mode: .colbert, groupByDocument: false)),
            (["k": 6, "fusion": "rrf", "weights": ["dense": 1, "sparse": 0.5, "colbert": 0]],
             SearchOptions(k: 6, weights: FusionWeights(dense: 1, sparse: 0.5, colbert: 0), fusion: .rrf)),
            (["k": 7, "weights": ["dense": 0, "sparse": 1, "colbert": 0]], SearchOptions(k: 7, weights: FusionWeights(dense: 0, sparse: 1, colbert: 0))),
        ]
        return texts.enumerated().map { i, text in (text, variants[i % variants.count].0, variants[i % variants.count].1) }
    }()

    /// Whether this build's encoder gives a short sequence the same bits alone and in a
    /// batch. The short-query path (encoder branch, "a row's outputs never depend on its
    /// batch") guarantees it; OpenBLAS sgemm over a packed batch does not (its result for
    /// a row shifts by an ulp with the batch's row count). Checked, not assumed, so these
    /// tests demand bit equality wherever the encoder promises it.
    static func encoderIsBatchInvariant(_ model: BGEM3) throws -> Bool {
        let a = model.tokenizer.encode("exception handling with try and finally", maxLength: 64)
        let b = model.tokenizer.encode("generators", maxLength: 64)
        let o = EncodeOptions(maxLength: 64)
        return try model.encode(tokenIDs: [a], options: o)[0] == model.encode(tokenIDs: [b, a, b], options: o)[1]
    }

    /// Equal floats, or (when the encoder is not batch-invariant) within 2e-6 of each other.
    static func assertClose(_ a: [Float]?, _ b: [Float]?, exact: Bool, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        if exact { XCTAssertEqual(a, b, message, file: file, line: line); return }
        guard let a, let b, a.count == b.count else { XCTAssertEqual(a?.count, b?.count, message, file: file, line: line); return }
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 2e-6, message, file: file, line: line)
    }

    /// The encoder level: a batch's embeddings equal each query's embedding alone (bit for
    /// bit with a batch-invariant encoder), and equal what `BGEM3.encode` gives the text.
    func testBatchedEmbeddingsEqualSingleOnes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = try SearchIndex(path: dir.appendingPathComponent("e.m3index").path, model: try TinyModel.get())
        let exact = try Self.encoderIsBatchInvariant(index.model)
        print("encoder batch-invariant: \(exact) (\(exact ? "bit equality" : "within 2e-6") demanded)")
        let prepared = try Self.queries.map { try index.prepareQuery($0.0, options: $0.2) }
        XCTAssertGreaterThan(Set(prepared.map(\.tokenIDs.count)).count, 5, "queries of many lengths")
        let batched = try index.encodeQueries(prepared)
        for (i, p) in prepared.enumerated() {
            let alone = try index.encodeQueries([p])[0]
            // The batch computes the union of the outputs; the ones this query asked for must match.
            if p.outputs.contains(.dense) { Self.assertClose(batched[i].dense, alone.dense, exact: exact, "dense \(i)") }
            if p.outputs.contains(.sparse) {
                XCTAssertEqual(batched[i].sparse?.ids, alone.sparse?.ids, "sparse ids \(i)")
                Self.assertClose(batched[i].sparse?.weights, alone.sparse?.weights, exact: exact, "sparse weights \(i)")
            }
            if p.outputs.contains(.colbert) { Self.assertClose(batched[i].colbert?.values, alone.colbert?.values, exact: exact, "colbert \(i)") }
            // Alone, the hook encodes exactly as the library's own query path does.
            let plain = try index.model.encode([Self.queries[i].0], options: EncodeOptions(maxLength: 512))[0]
            if p.outputs.contains(.dense) { XCTAssertEqual(alone.dense, plain.dense, "dense \(i) vs BGEM3.encode") }
            XCTAssertEqual(alone.tokenIDs, plain.tokenIDs)
        }
    }

    /// Over HTTP: 16 distinct queries held back until all wait, then one forward pass
    /// encodes them; every answer equals the library's answer to the query alone.
    func testConcurrentQueriesShareOnePassAndAnswerAsAlone() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(24))
        defer { s.removeFiles() }
        let before = PrometheusText(try await s.client.send("GET", "/metrics").text)
        s.server.batcher.pause()
        let responses = try await withThrowingTaskGroup(of: (Int, HTTPResult).self) { group in
            for (i, (text, fields, _)) in Self.queries.enumerated() {
                var fields = fields
                fields["query"] = text
                let body = try JSONSerialization.data(withJSONObject: fields)
                let client = s.client
                group.addTask { (i, try await client.send("POST", "/search", body: body)) }
            }
            var polls = 0
            while s.server.batcher.waitingCount < Self.queries.count && polls < 2000 {
                try await Task.sleep(for: .milliseconds(5))
                polls += 1
            }
            XCTAssertEqual(s.server.batcher.waitingCount, Self.queries.count, "every query waits for the pass")
            s.server.batcher.resume()
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        let after = PrometheusText(try await s.client.send("GET", "/metrics").text)
        // One pass for all, when the encoder allows sharing (else one per query, exactly).
        XCTAssertEqual(s.server.batcher.sharesPasses, try Self.encoderIsBatchInvariant(s.index.model))
        XCTAssertEqual(after.value("m3search_search_batch_size_count") - before.value("m3search_search_batch_size_count"),
                       s.server.batcher.sharesPasses ? 1 : Double(Self.queries.count))
        XCTAssertEqual(after.value("m3search_search_batch_size_sum") - before.value("m3search_search_batch_size_sum"), Double(Self.queries.count))

        let exact = true   // shared passes only with a batch-invariant encoder: always bit-equal
        func same(_ a: Double?, _ b: Float?, _ message: String) {
            Self.assertClose(a.map { [Float($0)] }, b.map { [$0] }, exact: exact, message)
        }
        var answered = 0
        for (i, (text, _, options)) in Self.queries.enumerated() {
            let r = try XCTUnwrap(responses[i])
            XCTAssertEqual(r.status, 200, r.text)
            let got = try XCTUnwrap(r.json?["results"]?.array, r.text)
            let want = try await s.index.search(text, options: options).results
            XCTAssertEqual(got.count, want.count, text)
            if !want.isEmpty { answered += 1 }
            for (g, w) in zip(got, want) {
                XCTAssertEqual(g["path"]?.string, w.path, text)
                XCTAssertEqual(g["chunk"]?.int, w.chunk, text)
                same(g["score"]?.number, w.score, text)
                same(g["scores"]?["dense"]?.number, w.dense, text)
                same(g["scores"]?["sparse"]?.number, w.sparse, text)
                same(g["scores"]?["colbert"]?.number, w.colbert, text)
            }
        }
        XCTAssertGreaterThanOrEqual(answered, 12, "most queries find something to compare")
        try await s.stop()
    }

    /// The token budget splits what waits into passes of at most `maxBatchTokens` tokens
    /// (in arrival order; a single longer query still gets its own pass).
    func testTokenBudgetSplitsBatches() async throws {
        let budget = 40
        let s = try await TestServer.start(documents: try corpusDocuments(6)) { $0.maxBatchTokens = budget }
        defer { s.removeFiles() }
        let texts = Self.queries.map(\.0)
        let lengths = try texts.map { try s.index.prepareQuery($0, options: SearchOptions()).tokenIDs.count }
        let before = PrometheusText(try await s.client.send("GET", "/metrics").text)
        s.server.batcher.pause()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // One at a time into the queue, so the arrival order is the order of `texts`.
            for (i, text) in texts.enumerated() {
                let client = s.client
                group.addTask {
                    let r = try await client.search(["query": text, "k": 1])
                    XCTAssertEqual(r.status, 200)
                }
                var polls = 0
                while s.server.batcher.waitingCount < i + 1 && polls < 2000 {
                    try await Task.sleep(for: .milliseconds(2))
                    polls += 1
                }
            }
            s.server.batcher.resume()
            try await group.waitForAll()
        }
        // The expected passes: greedy packing in arrival order.
        var passes: [Int] = [], current = 0
        let shares = s.server.batcher.sharesPasses
        for n in lengths {
            XCTAssertLessThanOrEqual(n, PreparedQuery.sharedPassMaxTokens)
            if current > 0 && (!shares || current + n > budget) { passes.append(current); current = 0 }
            current += n
        }
        passes.append(current)
        let after = PrometheusText(try await s.client.send("GET", "/metrics").text)
        XCTAssertEqual(after.value("m3search_search_batch_tokens_count") - before.value("m3search_search_batch_tokens_count"),
                       Double(passes.count))
        XCTAssertEqual(after.value("m3search_search_batch_tokens_sum") - before.value("m3search_search_batch_tokens_sum"),
                       Double(lengths.reduce(0, +)))
        XCTAssertGreaterThan(passes.count, 2, "the budget must split this batch")
        XCTAssertLessThan(passes.count, shares ? texts.count : texts.count + 1)
        try await s.stop()
    }

    /// An idle server does not wait for company: a lone query is encoded at once, even
    /// with a long batch wait configured.
    func testLoneQueryDoesNotWait() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(4)) { $0.maxBatchWait = .seconds(30) }
        defer { s.removeFiles() }
        for q in ["generators", "exceptions", "classes"] {
            let r = try await s.client.search(["query": q, "k": 1])
            XCTAssertEqual(r.status, 200)
        }
        let metrics = PrometheusText(try await s.client.send("GET", "/metrics").text)
        XCTAssertEqual(metrics.value("m3search_search_batch_size_count"), 3, "one pass per query")
        XCTAssertEqual(s.server.batcher.passesThatWaited, 0, "no pass waited for company")
        try await s.stop()
    }
}

