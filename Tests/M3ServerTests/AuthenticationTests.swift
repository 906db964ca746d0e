import Foundation
import M3Search
@testable import M3Server
import XCTest

/// API keys: every endpoint but /health answers 401 without a valid key and works with
/// one; the read key searches and reads metrics but may not write (403); keys travel in
/// `Authorization: Bearer` or `api-key`; a non-loopback address without a key is refused.
final class AuthenticationTests: XCTestCase {
    static let fullKey = "full-key-7c1e0b2a9d"
    static let readKey = "read-key-55f3a8e1c4"

    func testKeyMatrix() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(4)) {
            $0.apiKey = Self.fullKey
            $0.readAPIKey = Self.readKey
        }
        defer { s.removeFiles() }
        let credentials: [(name: String, headers: [String: String], access: APIKeys.Access)] = [
            ("none", [:], .none),
            ("wrong bearer", ["Authorization": "Bearer not-the-key"], .none),
            ("full key as a prefix", ["Authorization": "Bearer \(Self.fullKey)x"], .none),
            ("full key truncated", ["Authorization": "Bearer \(Self.fullKey.dropLast())"], .none),
            ("basic scheme", ["Authorization": "Basic \(Self.fullKey)"], .none),
            ("empty api-key", ["api-key": ""], .none),
            ("read bearer", ["Authorization": "Bearer \(Self.readKey)"], .read),
            ("read api-key", ["api-key": Self.readKey], .read),
            ("full bearer", ["Authorization": "Bearer \(Self.fullKey)"], .write),
            ("full bearer, lower-case scheme", ["Authorization": "bearer \(Self.fullKey)"], .write),
            ("full api-key", ["api-key": Self.fullKey], .write),
            ("wrong bearer, full api-key", ["Authorization": "Bearer nope", "api-key": Self.fullKey], .write),
        ]
        var unauthorized = 0, forbidden = 0
        for (i, credential) in credentials.enumerated() {
            let h = credential.headers
            let expectRead = credential.access >= .read ? 200 : 401
            let expectWrite = credential.access == .write ? 200 : credential.access == .read ? 403 : 401

            let search = try await s.client.search(["query": "exceptions", "k": 2], headers: h)
            XCTAssertEqual(search.status, expectRead, "\(credential.name): POST /search \(search.text)")
            let metrics = try await s.client.send("GET", "/metrics", headers: h)
            XCTAssertEqual(metrics.status, expectRead, "\(credential.name): GET /metrics")
            let id = "auth/\(i).txt"
            let add = try await s.client.send("POST", "/documents", json: ["documents": [["id": id, "text": "A lighthouse."]]], headers: h)
            XCTAssertEqual(add.status, expectWrite, "\(credential.name): POST /documents \(add.text)")
            let delete = try await s.client.send("DELETE", "/documents/auth%2F\(i).txt", headers: h)
            XCTAssertEqual(delete.status, expectWrite, "\(credential.name): DELETE \(delete.text)")
            let health = try await s.client.send("GET", "/health", headers: h)
            XCTAssertEqual(health.status, 200, "/health is open")
            let unknown = try await s.client.send("GET", "/no-such-route", headers: h)
            XCTAssertEqual(unknown.status, credential.access >= .read ? 404 : 401, "unknown routes reveal nothing without a key")

            for r in [search, metrics, add, delete] where r.status == 401 || r.status == 403 {
                XCTAssertEqual(r.header("Content-Type"), "application/json")
                XCTAssertNotNil(r.error, r.text)
                XCTAssertFalse(r.text.contains(Self.fullKey) || r.text.contains(Self.readKey), "a key leaked into an answer")
                if r.status == 401 {
                    unauthorized += 1
                    XCTAssertEqual(r.header("WWW-Authenticate"), "Bearer realm=\"m3search\"")
                    XCTAssertTrue(r.error?.contains("Authorization: Bearer") ?? false, r.text)
                } else {
                    forbidden += 1
                    XCTAssertTrue(r.error?.contains("may only search") ?? false, r.text)
                }
            }
        }
        // Refused writes changed nothing: only the full key's documents came and went.
        XCTAssertEqual(s.index.documentCount, 4)
        let text = try await s.client.send("GET", "/metrics", headers: ["api-key": Self.readKey]).text
        let metrics = PrometheusText(text)
        XCTAssertEqual(metrics.value("m3search_http_requests_rejected_total", ["reason": "unauthorized"]), Double(unauthorized + 6))
        XCTAssertEqual(metrics.value("m3search_http_requests_rejected_total", ["reason": "forbidden"]), Double(forbidden))
        XCTAssertFalse(text.contains(Self.fullKey) || text.contains(Self.readKey), "a key leaked into the metrics")
        try await s.stop()
    }

    /// Without a key the server behaves as before: everything is open.
    func testNoKeyConfiguredLeavesEverythingOpen() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(2))
        defer { s.removeFiles() }
        let search = try await s.client.search(["query": "x"])
        let add = try await s.client.send("POST", "/documents", json: ["documents": [["id": "a", "text": "b"]]])
        let metrics = try await s.client.send("GET", "/metrics")
        XCTAssertEqual([search.status, add.status, metrics.status], [200, 200, 200])
        try await s.stop()
    }

    /// The comparison accepts exactly the key: not a prefix, an extension, another length
    /// or a one-byte change anywhere.
    func testConstantTimeEquals() {
        let secret = Array("0123456789abcdef".utf8)
        XCTAssertTrue(APIKeys.constantTimeEquals(secret[...], secret))
        XCTAssertFalse(APIKeys.constantTimeEquals([][...], secret))
        XCTAssertFalse(APIKeys.constantTimeEquals(secret.dropLast(), secret))
        XCTAssertFalse(APIKeys.constantTimeEquals((secret + [0x30])[...], secret))
        for i in secret.indices {
            var changed = secret
            changed[i] ^= 0x01
            XCTAssertFalse(APIKeys.constantTimeEquals(changed[...], secret), "byte \(i)")
        }
        // A guess made of the secret's complement bytes (what the loop compares past the
        // guess's end) is still refused.
        XCTAssertFalse(APIKeys.constantTimeEquals(secret.map { ~$0 }.prefix(4), Array(secret.prefix(8))))
        // Slices that do not start at index 0 (the header parser's trimmed slices).
        let padded = Array("  0123456789abcdef".utf8)
        XCTAssertTrue(APIKeys.constantTimeEquals(padded[2...], secret))
    }

    func testConfigurationRefusesRemoteAddressWithoutKey() async throws {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"] {
            XCTAssertTrue(ServerConfiguration.isLoopback(host), host)
        }
        for host in ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "0177.0.0.1", "127.0.0", "1270.0.0.1", ""] {
            XCTAssertFalse(ServerConfiguration.isLoopback(host), host)
        }
        var c = ServerConfiguration()
        c.host = "0.0.0.0"
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertTrue("\(error)".contains("--api-key"), "\(error)")
            XCTAssertTrue("\(error)".contains("--insecure-no-auth"), "\(error)")
        }
        c.apiKey = "k"
        XCTAssertNoThrow(try c.validate())
        c.apiKey = nil
        c.allowsUnauthenticatedRemoteAccess = true
        XCTAssertNoThrow(try c.validate())
        c.allowsUnauthenticatedRemoteAccess = false
        c.host = "127.0.0.1"
        XCTAssertNoThrow(try c.validate())

        for (key, read) in [("has space", nil), ("", nil), ("tab\tkey", nil), ("ünïcode", nil), ("same", "same"), (nil, "read-only")] as [(String?, String?)] {
            var bad = ServerConfiguration()
            bad.apiKey = key
            bad.readAPIKey = read
            XCTAssertThrowsError(try bad.validate(), "\(String(describing: key)) / \(String(describing: read))") { error in
                // The message describes the problem without repeating the key.
                if let key, !key.isEmpty { XCTAssertFalse("\(error)".contains(key), "\(error)") }
            }
        }

        // M3Server.run refuses too (for apps that embed the server), before binding.
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = try SearchIndex(path: dir.appendingPathComponent("a.m3index").path, model: try TinyModel.get())
        var open = ServerConfiguration()
        open.host = "0.0.0.0"
        open.port = 0
        let server = M3Server(index: index, configuration: open, logger: .init(label: "test"))
        do {
            try await server.run(gracefulShutdownSignals: []) { _, _ in XCTFail("it must not listen") }
            XCTFail("run must throw")
        } catch let error as ServerConfigurationError {
            XCTAssertTrue(error.description.contains("0.0.0.0"), error.description)
        }
    }

    /// `m3search serve --host 0.0.0.0` with no key exits non-zero at once, before loading
    /// the model, with a message naming the way out; nothing listens.
    func testServeRefusesAllInterfacesWithoutKey() throws {
        for host in ["0.0.0.0", "::"] {
            let started = Date()
            let r = try runM3Search(["serve", "--host", host, "--port", "0", "--model", fixture("models/tiny-safetensors")],
                                    environment: ["M3SEARCH_API_KEY": ""])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("refusing to serve \(host) without an API key"), r.stderr)
            XCTAssertTrue(r.stderr.contains("--insecure-no-auth"), r.stderr)
            XCTAssertFalse(r.stdout.contains("listening"), r.stdout)
            XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        }
        let badKey = try runM3Search(["serve", "--api-key", "two words", "--model", fixture("models/tiny-safetensors")])
        XCTAssertNotEqual(badKey.status, 0)
        XCTAssertTrue(badKey.stderr.contains("printable ASCII"), badKey.stderr)
        XCTAssertFalse(badKey.stderr.contains("two words"), "the key is not echoed: \(badKey.stderr)")
    }
}
