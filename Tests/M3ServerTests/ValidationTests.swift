import Foundation
import M3Search
@testable import M3Server
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Bad requests get a 4xx with `{"error": "…"}` naming the problem, change nothing, and
/// leave the server serving; slow and excess clients are cut off with bounded resources.
final class ValidationTests: XCTestCase {
    func testBadRequestsGetClearErrors() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(5)) { $0.maxBodyBytes = 4096 }
        defer { s.removeFiles() }
        let chunksBefore = s.index.chunkCount
        // (path, body, status, words the message must contain)
        let cases: [(String, String, Int, [String])] = [
            ("/search", #"{"query":"#, 400, ["malformed JSON"]),
            ("/search", "", 400, ["empty"]),
            ("/search", "[1, 2]", 400, ["object"]),
            ("/search", #""just a string""#, 400, ["object"]),
            ("/search", #"{"query":"x","limit":3}"#, 400, ["unknown field", "\"limit\""]),
            ("/search", #"{"k":3}"#, 400, ["missing", "query"]),
            ("/search", #"{"query":"   "}"#, 400, ["query is empty"]),
            ("/search", #"{"query":null}"#, 400, ["query"]),
            ("/search", #"{"query":"x","k":0}"#, 400, ["k must be between 1 and 10000", "got 0"]),
            ("/search", #"{"query":"x","k":10001}"#, 400, ["k must be between 1 and 10000"]),
            ("/search", #"{"query":"x","k":-5}"#, 400, ["k must be between"]),
            ("/search", #"{"query":"x","k":"5"}"#, 400, ["k must be an integer"]),
            ("/search", #"{"query":"x","k":2.5}"#, 400, ["k"]),
            ("/search", #"{"query":"x","k":null}"#, 400, ["k", "null"]),
            ("/search", #"{"query":"x","candidates":0}"#, 400, ["candidates must be between"]),
            ("/search", #"{"query":"x","ef_search":0}"#, 400, ["ef_search must be between"]),
            ("/search", #"{"query":"x","chunks":"yes"}"#, 400, ["chunks must be true or false"]),
            ("/search", #"{"query":"x","mode":"bm25"}"#, 400, ["mode must be one of", "hybrid"]),
            ("/search", #"{"query":"x","fusion":"max"}"#, 400, ["fusion must be one of", "rrf"]),
            ("/search", #"{"query":"x","weights":"0.4,0.3,0.3"}"#, 400, ["weights must be an object"]),
            ("/search", #"{"query":"x","weights":{"dense":0,"sparse":0,"colbert":0}}"#, 400, ["all zero"]),
            ("/search", #"{"query":"x","weights":{"dense":-1,"sparse":0,"colbert":1}}"#, 400, ["weights.dense", "between 0 and 1000000"]),
            ("/search", #"{"query":"x","weights":{"dense":1,"sparse":0}}"#, 400, ["missing", "weights.colbert"]),
            ("/search", #"{"query":"x","weights":{"dense":1,"sparse":0,"colbert":0,"bm25":1}}"#, 400, ["unknown field", "weights.bm25"]),
            ("/documents", #"{"documents":[]}"#, 400, ["documents is empty"]),
            ("/documents", #"{"docs":[]}"#, 400, ["unknown field", "\"docs\""]),
            ("/documents", #"{"documents":[{"id":"","text":"x"}]}"#, 400, ["documents[0].id is empty"]),
            ("/documents", #"{"documents":[{"id":"a"}]}"#, 400, ["missing", "documents[0].text"]),
            ("/documents", #"{"documents":[{"id":"a","text":"x","metadata":{"year":2020}}]}"#, 400, ["documents[0].metadata.year must be a string"]),
            ("/documents", #"{"documents":[{"id":"a","text":"x","tags":[]}]}"#, 400, ["unknown field", "documents[0].tags"]),
            ("/documents", #"{"documents":{"id":"a","text":"x"}}"#, 400, ["documents must be an array"]),
        ]
        for (path, body, status, words) in cases {
            let r = try await s.client.send("POST", path, body: Data(body.utf8))
            XCTAssertEqual(r.status, status, "\(path) \(body): \(r.text)")
            XCTAssertEqual(r.header("Content-Type"), "application/json", body)
            let message = r.error ?? ""
            for word in words { XCTAssertTrue(message.contains(word), "\(body): \"\(message)\" lacks \"\(word)\"") }
        }

        // Larger than --max-body-bytes: 413, whether or not Content-Length announces it.
        let big = Data(("{\"query\":\"" + String(repeating: "a", count: 5000) + "\"}").utf8)
        let tooLarge = try await s.client.send("POST", "/search", body: big)
        XCTAssertEqual(tooLarge.status, 413, tooLarge.text)
        XCTAssertTrue(tooLarge.error?.contains("--max-body-bytes") ?? false, tooLarge.text)
        let bigDocs = Data(("{\"documents\":[{\"id\":\"big\",\"text\":\"" + String(repeating: "b", count: 5000) + "\"}]}").utf8)
        let tooLargeDocs = try await s.client.send("POST", "/documents", body: bigDocs)
        XCTAssertEqual(tooLargeDocs.status, 413)

        // Unknown routes and methods: JSON errors too.
        let notFound = try await s.client.send("GET", "/nope")
        XCTAssertEqual(notFound.status, 404)
        XCTAssertTrue(notFound.error?.contains("/nope") ?? false, notFound.text)
        let wrongMethod = try await s.client.send("GET", "/search")
        XCTAssertEqual(wrongMethod.status, 405)
        XCTAssertEqual(wrongMethod.header("Allow"), "POST")
        let put = try await s.client.send("PUT", "/documents/a")
        XCTAssertEqual(put.status, 405)

        // Nothing changed, and the server still answers.
        XCTAssertEqual(s.index.documentCount, 5)
        XCTAssertEqual(s.index.chunkCount, chunksBefore)
        let ok = try await s.client.search(["query": "still serving", "k": 2])
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.json?["results"]?.array?.count, 2)
        try await s.stop()
    }

    /// The schema's `pattern` for `query` and the server's blank check agree on every
    /// character (schemathesis found `"\u000b"` valid per the schema but refused): a
    /// query of only white space is 400 and matches no pattern; anything else is searched.
    func testBlankQueryAgreesWithSchemaPattern() async throws {
        let pattern = try XCTUnwrap(OpenAPI.shared.schema(named: "SearchRequest")["properties"]?["query"]?["pattern"]?.string)
        // The whole Basic Multilingual Plane (surrogates excluded) and a few beyond, one
        // character at a time, and blank strings of several characters.
        let regex = try NSRegularExpression(pattern: pattern)
        func matches(_ text: String) -> Bool { regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil }
        var checked = 0
        for value in Array(0..<0xD800) + Array(0xE000...0xFFFF) + [0x1F600, 0xE0020, 0x10FFFF] {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let text = String(Character(scalar))
            XCTAssertEqual(SearchRequest.isBlank(text), !matches(text), String(format: "U+%04X", value))
            // What the library trims is blank here too, so no accepted query can fail as empty below.
            if CharacterSet.whitespacesAndNewlines.contains(scalar) { XCTAssertTrue(SearchRequest.isBlank(text), String(format: "U+%04X", value)) }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 63_000)

        let s = try await TestServer.start(documents: try corpusDocuments(3))
        defer { s.removeFiles() }
        for blank in ["\u{0B}", "\u{85}", "\u{FEFF}", "\u{200B}", " \u{3000}\n\t", "\u{2028}\u{2029}"] {
            let r = try await s.client.search(["query": blank])
            XCTAssertEqual(r.status, 400, "\(blank.unicodeScalars.map { String($0.value, radix: 16) })")
            XCTAssertTrue(r.error?.contains("query is empty") ?? false, r.text)
            XCTAssertFalse(OpenAPI.matches(blank, pattern: pattern))
        }
        for text in ["\u{200C}", "\u{180E}", "\u{0}", "x", " a ", "\u{1C}"] {
            let r = try await s.client.search(["query": text, "k": 1])
            XCTAssertEqual(r.status, 200, "\(text.unicodeScalars.map { String($0.value, radix: 16) }): \(r.text)")
            XCTAssertTrue(OpenAPI.matches(text, pattern: pattern))
        }
        try await s.stop()
    }

    /// A request line over the HTTP decoder's 80 KiB limit (a DELETE of a 100 KB id, found
    /// by schemathesis) gets the API's JSON 400, not an empty body; the server goes on.
    func testOversizedRequestLineGetsJSONError() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(2))
        defer { s.removeFiles() }
        for (method, path) in [("DELETE", "/documents/" + String(repeating: "a", count: 100_000)),
                               ("POST", "/search?" + String(repeating: "q", count: 90_000))] {
            let fd = try connectLoopback(port: s.port)
            defer { close(fd) }
            let head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
            var sent = 0
            let bytes = Array(head.utf8)
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }   // the server may answer and close before reading it all
                sent += n
            }
            let response = readUntilClosed(fd)
            let (status, headers, body) = try XCTUnwrap(parseHTTPResponse(response), response)
            XCTAssertEqual(status, 400)
            XCTAssertEqual(headers["content-type"], "application/json")
            XCTAssertEqual(headers["content-length"], String(body.utf8.count))
            let result = HTTPResult(status: status, headers: headers, body: Data(body.utf8))
            XCTAssertTrue(result.error?.contains("80 KiB") ?? false, body)
            XCTAssertEqual(OpenAPI.shared.problems(method: method, path: method == "DELETE" ? "/documents/x" : "/search", result: result), [])
        }
        let ok = try await s.client.search(["query": "still serving", "k": 1])
        XCTAssertEqual(ok.status, 200)
        try await s.stop()
    }

    /// A server over an index it may not write refuses writes with 403 and still searches.
    func testReadOnlyIndexRefusesWrites() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(3), readOnly: true)
        defer { s.removeFiles() }
        let add = try await s.client.send("POST", "/documents", json: ["documents": [["id": "x", "text": "x"]]])
        XCTAssertEqual(add.status, 403)
        XCTAssertTrue(add.error?.contains("read-only") ?? false, add.text)
        let delete = try await s.client.send("DELETE", "/documents/corpus%2Fassert.txt")
        XCTAssertEqual(delete.status, 403)
        XCTAssertEqual(s.index.documentCount, 3)
        let health = try await s.client.send("GET", "/health")
        XCTAssertEqual(health.json?["read_only"], .bool(true))
        let search = try await s.client.search(["query": "assert", "k": 1])
        XCTAssertEqual(search.status, 200)
        try await s.stop()
    }

    /// While another writer (here a second SearchIndex, as `m3search index` would be) holds
    /// the index's writer lock, writes answer 409 naming the holder and change nothing;
    /// searches go on; once the lock is released the same write succeeds.
    func testWritesWhileAnotherWriterHoldsTheLockGet409() async throws {
        let s = try await TestServer.start()
        defer { s.removeFiles() }
        let other = try SearchIndex(path: s.indexPath, model: try TinyModel.get())
        try other.lockForWriting()
        let body: [String: Any] = ["documents": [["id": "x", "text": "lighthouses guide ships"]]]
        let refused = try await s.client.send("POST", "/documents", json: body)
        XCTAssertEqual(refused.status, 409, refused.text)
        XCTAssertTrue(refused.error?.contains("locked by PID \(getpid())") ?? false, refused.text)
        let delete = try await s.client.send("DELETE", "/documents/x")
        XCTAssertEqual(delete.status, 409, delete.text)
        XCTAssertEqual(s.index.documentCount, 0)
        let search = try await s.client.search(["query": "ships", "k": 1])
        XCTAssertEqual(search.status, 200, search.text)
        other.releaseWriteLock()
        let added = try await s.client.send("POST", "/documents", json: body)
        XCTAssertEqual(added.status, 200, added.text)
        XCTAssertEqual(s.index.documentCount, 1)
        try await s.stop()
    }

    /// A client that sends a head and then trickles (or stops sending) its body is
    /// disconnected after the read timeout; the server keeps serving others meanwhile.
    func testSlowClientIsDisconnected() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(3)) {
            $0.requestReadTimeout = .milliseconds(600)
            $0.idleTimeout = .seconds(30)
        }
        defer { s.removeFiles() }
        let fd = try connectLoopback(port: s.port)
        defer { close(fd) }
        let head = "POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"qu"
        XCTAssertEqual(head.utf8.count, send(fd, head, head.utf8.count, 0))
        let start = Date()
        // Trickle a byte every 200 ms: each resets an idle timer, not the read timeout.
        var closed = false
        for _ in 0..<25 {
            try await Task.sleep(for: .milliseconds(200))
            let sent = send(fd, "e", 1, Int32(MSG_NOSIGNAL))
            if sent <= 0 || peerClosed(fd) { closed = true; break }
            let r = try await s.client.send("GET", "/health")   // others are served meanwhile
            XCTAssertEqual(r.status, 200)
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertTrue(closed, "the connection was still open after \(elapsed) s")
        XCTAssertGreaterThanOrEqual(elapsed, 0.5)
        XCTAssertLessThan(elapsed, 4)
        try await s.stop()
    }

    /// Bodies being read count against --max-buffered-body-bytes: while one client holds a
    /// large announced body open, another request that would exceed the budget gets 503
    /// at once; when the first connection goes away its share is released.
    func testBufferedBodyBudget() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(3)) {
            $0.maxBodyBytes = 4096
            $0.maxBufferedBodyBytes = 4096
        }
        defer { s.removeFiles() }
        let fd = try connectLoopback(port: s.port)
        let head = "POST /documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4090\r\n\r\n{\"documents\""
        XCTAssertEqual(head.utf8.count, send(fd, head, head.utf8.count, 0))
        // Wait until the server is reading that body (in flight: it and this scrape).
        var polls = 0
        while PrometheusText(try await s.client.send("GET", "/metrics").text).value("m3search_http_requests_in_flight") < 2, polls < 400 {
            try await Task.sleep(for: .milliseconds(5))
            polls += 1
        }
        let refused = try await s.client.search(["query": "budget", "k": 1])
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertTrue(refused.error?.contains("--max-buffered-body-bytes") ?? false, refused.text)
        close(fd)
        var status = 0
        for _ in 0..<400 {
            status = try await s.client.search(["query": "budget", "k": 1]).status
            if status == 200 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTAssertEqual(status, 200, "the closed connection's share was released")
        let metrics = PrometheusText(try await s.client.send("GET", "/metrics").text)
        XCTAssertGreaterThanOrEqual(metrics.value("m3search_http_requests_rejected_total", ["reason": "body"]), 1)
        XCTAssertEqual(metrics.value("m3search_http_requests_rejected_total", ["reason": "search"]), 0)
        try await s.stop()
    }

    /// When more writes arrive than --max-pending-writes admits, the extra ones get 503
    /// with Retry-After at once (nothing queues without bound), and are counted.
    func testBusyWritesGet503() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(3)) { $0.maxPendingWrites = 1 }
        defer { s.removeFiles() }
        let bulk = try corpusDocuments(80, characters: 1200, idPrefix: "bulk/")
            .map { ["id": $0.id, "text": $0.text] }
        async let first = s.client.send("POST", "/documents", json: ["documents": bulk])
        // Wait until the big write holds the one write slot.
        var waited = 0
        while PrometheusText(try await s.client.send("GET", "/metrics").text).value("m3search_queue_depth", ["queue": "write"]) < 1, waited < 1000 {
            try await Task.sleep(for: .milliseconds(5))
            waited += 1
        }
        let second = try await s.client.send("POST", "/documents", json: ["documents": [["id": "small", "text": "small"]]])
        let firstResult = try await first
        XCTAssertEqual(firstResult.status, 200, firstResult.text)
        XCTAssertEqual(second.status, 503, "the write queue was full: \(second.text)")
        let refused = second
        XCTAssertEqual(refused.header("Retry-After"), "1")
        XCTAssertTrue(refused.error?.contains("busy") ?? false, refused.text)
        let metrics = PrometheusText(try await s.client.send("GET", "/metrics").text)
        XCTAssertEqual(metrics.value("m3search_http_requests_rejected_total", ["reason": "write"]), 1)
        try await s.stop()
        XCTAssertTrue(try s.index.check().isSound)
    }
}

/// A blocking TCP connection to 127.0.0.1:port.
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard result == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// Everything the peer sends until it closes the connection (at most 10 s).
func readUntilClosed(_ fd: Int32) -> String {
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        data += buffer[0..<n]
    }
    return String(decoding: data, as: UTF8.self)
}

/// Status, headers (lower-case names) and body of one HTTP/1.1 response.
func parseHTTPResponse(_ text: String) -> (Int, [String: String], String)? {
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    guard let statusLine = lines.first, let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return (status, headers, String(text[split.upperBound...]))
}

/// True when the peer has closed the connection (a non-blocking read returns 0 or fails).
func peerClosed(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT) | Int32(MSG_PEEK))
    if n == 0 { return true }
    if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
    return false
}
