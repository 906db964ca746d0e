import Foundation
import M3Search
import XCTest

/// `m3search serve` as a process: it answers `POST /search` exactly as `m3search query
/// --json` prints, logs JSON lines with request ids, and on SIGTERM finishes the write in
/// flight, checkpoints, exits 0, and leaves an index that passes `check`.
final class ServeCommandTests: XCTestCase {
    func testServeMatchesQueryJSONAndShutsDownOnSIGTERM() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        for d in try corpusDocuments(12, characters: 2000, idPrefix: "") {
            try Data(d.text.utf8).write(to: docs.appendingPathComponent(d.id))
        }
        let index = dir.appendingPathComponent("cli.m3index").path
        let model = fixture("models/tiny-safetensors")
        XCTAssertEqual(try runM3Search(["index", docs.path, "--index", index, "--model", model, "--max-length", "64", "--overlap", "8"]).status, 0)
        let query = "exception handling with try and finally"
        let cli = try runM3Search(["query", query, "--index", index, "--model", model, "--json", "--k", "4", "--mode", "colbert"])
        XCTAssertEqual(cli.status, 0, cli.stderr)

        let serve = Process()
        serve.executableURL = m3searchBinary
        serve.arguments = ["serve", "--index", index, "--model", model, "--port", "0", "--log-format", "json"]
        serve.environment = ProcessInfo.processInfo.environment.filter { $0.key != "M3SEARCH_PORT" && $0.key != "M3SEARCH_HOST" }
        let stdout = Pipe()
        let stderrURL = dir.appendingPathComponent("serve.err")
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        serve.standardOutput = stdout
        serve.standardError = try FileHandle(forWritingTo: stderrURL)
        try serve.run()
        defer { if serve.isRunning { serve.terminate() } }

        // The one stdout line: "m3search: listening on http://127.0.0.1:PORT".
        let line = try await firstLine(of: stdout.fileHandleForReading, timeout: 120)
        let port = try XCTUnwrap(line.split(separator: ":").last.flatMap { Int($0) }, line)
        XCTAssertTrue(line.hasPrefix("m3search: listening on http://127.0.0.1:"), line)
        let client = APIClient(base: URL(string: "http://127.0.0.1:\(port)")!)

        // A newline in an id must stay inside its JSON string (checked with the log below).
        let forged = try await client.send("DELETE", "/documents/missing%0A%7B%22message%22%3A%22forged%22%7D")
        XCTAssertEqual(forged.status, 404)
        let served = try await client.search(["query": query, "k": 4, "mode": "colbert"])
        XCTAssertEqual(served.status, 200, served.text)
        XCTAssertEqual(served.json, try JSON.parse(Data(cli.stdout.utf8)), "POST /search and query --json agree")

        // A write large enough to be in flight when SIGTERM arrives.
        let bulk = try corpusDocuments(60, characters: 1200, idPrefix: "bulk/").map { ["id": $0.id, "text": $0.text] }
        let body = try JSONSerialization.data(withJSONObject: ["documents": bulk])
        async let write = client.send("POST", "/documents", body: body)
        var running = 0.0, polls = 0
        while running < 1, polls < 2000 {
            running = PrometheusText(try await client.send("GET", "/metrics").text).value("m3search_queue_depth", ["queue": "write"])
            if running < 1 { try await Task.sleep(for: .milliseconds(5)) }
            polls += 1
        }
        XCTAssertEqual(running, 1, "the write was running")
        kill(serve.processIdentifier, SIGTERM)
        let written = try await write
        XCTAssertEqual(written.status, 200, "the write in flight finished: \(written.text)")
        XCTAssertEqual(written.json?["documents"]?.int, 12 + bulk.count)

        let deadline = Date().addingTimeInterval(60)
        while serve.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(serve.isRunning, "the server exits after SIGTERM")
        XCTAssertEqual(serve.terminationStatus, 0)

        // Structured logs: every stderr line a JSON object; requests carry their id.
        let log = try String(contentsOf: stderrURL, encoding: .utf8)
        let entries = log.split(separator: "\n").compactMap { try? JSON.parse(Data($0.utf8)) }
        XCTAssertEqual(entries.count, log.split(separator: "\n").count, "every log line is JSON:\n\(log.prefix(2000))")
        let requests = entries.filter { $0["message"]?.string == "request" }
        XCTAssertGreaterThanOrEqual(requests.count, 3)
        XCTAssertTrue(requests.allSatisfy { $0["hb.request.id"]?.string?.isEmpty == false && $0["status"] != nil })
        XCTAssertEqual(Set(requests.compactMap { $0["hb.request.id"]?.string }).count, requests.count, "ids are unique")
        XCTAssertTrue(entries.contains { $0["message"]?.string == "index checkpointed" }, log)
        XCTAssertFalse(entries.contains { $0["message"]?.string == "forged" }, "a request forged a log line")
        XCTAssertTrue(requests.contains { $0["error"]?.string?.contains("missing\n{\"message\"") ?? false }, "the id is logged whole, escaped")

        // The WAL was folded into the file, and the index is whole.
        let wal = (try? FileManager.default.attributesOfItem(atPath: index + "-wal")[.size] as? Int) ?? 0
        XCTAssertEqual(wal, 0, "checkpoint(TRUNCATE) leaves an empty WAL")
        let reopened = try SearchIndex(path: index, model: try TinyModel.get(), options: .existing())
        let report = try reopened.check()
        XCTAssertTrue(report.isSound, "\(report.problems)")
        XCTAssertEqual(report.documents, 12 + bulk.count)
    }

    /// Text logs escape what requests put in them: a `%0A` in a DELETE id cannot start a
    /// line, a space or `=` cannot forge a field. The API key (given by environment
    /// variable) appears in no log line, even at trace level, and no answer.
    func testTextLogEscapesRequestTextAndNeverShowsTheKey() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = "log-test-key-3f9a61"
        let stderrURL = dir.appendingPathComponent("serve.err")
        let (serve, port) = try await startServe(["--index", dir.appendingPathComponent("t.m3index").path, "--port", "0",
                                                  "--log-format", "text", "--log-level", "trace"],
                                                 environment: ["M3SEARCH_API_KEY": key], stderr: stderrURL)
        defer { if serve.isRunning { serve.terminate() } }
        let client = APIClient(base: URL(string: "http://127.0.0.1:\(port)")!)
        let auth = ["Authorization": "Bearer \(key)"]
        let none = try await client.search(["query": "lighthouse"])
        let wrong = try await client.search(["query": "lighthouse"], headers: ["Authorization": "Bearer \(key)-wrong"])
        let right = try await client.search(["query": "lighthouse"], headers: auth)
        XCTAssertEqual([none.status, wrong.status, right.status], [401, 401, 200])
        let attempts = ["/documents/x%0A2030-01-01T00:00:00.000Z%20info%20m3search:%20forged",
                        "/documents/y%0D%0Aforged%20status=200", "/documents/z%20status=200%E2%80%A8forged"]
        for path in attempts {
            let r = try await client.send("DELETE", path, headers: auth)
            XCTAssertEqual(r.status, 404, r.text)
        }
        kill(serve.processIdentifier, SIGTERM)
        serve.waitUntilExit()
        XCTAssertEqual(serve.terminationStatus, 0)

        let log = try String(contentsOf: stderrURL, encoding: .utf8)
        XCTAssertFalse(log.contains(key), "the API key was logged")
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertGreaterThan(lines.count, 5)
        let timestamp = try NSRegularExpression(pattern: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (trace|debug|info|notice|warning|error|critical) "#)
        for line in lines {
            let text = String(line)
            XCTAssertNotNil(timestamp.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), "a line not written by the logger: \(text)")
            XCTAssertFalse(text.contains("\r") || text.unicodeScalars.contains("\u{2028}"), "a raw line break: \(text)")
        }
        XCTAssertFalse(lines.contains { $0.contains(" forged") && !$0.contains("\"") }, "forged text outside a quoted value")
        XCTAssertTrue(log.contains(#"error="no document with id \"x\n2030-01-01T00:00:00.000Z info m3search: forged\"""#), log)
        XCTAssertTrue(log.contains(#"\"y\r\nforged status=200\""#), log)
        XCTAssertTrue(log.contains(#"z status=200\u{2028}forged"#), log)
        let requests = lines.filter { $0.contains(": request ") }
        XCTAssertEqual(requests.filter { $0.contains("status=404") }.count, 3, "the forged status=200 is inside the quoted error")
    }

    func testServeRejectsBadFlags() throws {
        let badPort = try runM3Search(["serve", "--port", "70000", "--model", fixture("models/tiny-safetensors")])
        XCTAssertNotEqual(badPort.status, 0)
        XCTAssertTrue(badPort.stderr.contains("--port"), badPort.stderr)
        let badLevel = try runM3Search(["serve", "--log-level", "loud", "--model", fixture("models/tiny-safetensors")])
        XCTAssertNotEqual(badLevel.status, 0)
        XCTAssertTrue(badLevel.stderr.contains("loud"), badLevel.stderr)
    }
}

/// Starts `m3search serve` with the tiny model (`arguments` add to it) and returns the
/// process and the port from its one stdout line; stderr goes to `stderr`.
func startServe(_ arguments: [String], environment: [String: String] = [:], stderr: URL) async throws -> (Process, Int) {
    let serve = Process()
    serve.executableURL = m3searchBinary
    serve.arguments = ["serve", "--model", fixture("models/tiny-safetensors")] + arguments
    serve.environment = ProcessInfo.processInfo.environment
        .filter { !["M3SEARCH_PORT", "M3SEARCH_HOST", "M3SEARCH_API_KEY", "M3SEARCH_READ_API_KEY"].contains($0.key) }
        .merging(environment) { $1 }
    let stdout = Pipe()
    FileManager.default.createFile(atPath: stderr.path, contents: nil)
    serve.standardOutput = stdout
    serve.standardError = try FileHandle(forWritingTo: stderr)
    try serve.run()
    let line = try await firstLine(of: stdout.fileHandleForReading, timeout: 120)
    guard let port = line.split(separator: ":").last.flatMap({ Int($0) }) else {
        serve.terminate()
        throw XCTSkip("serve printed \(line)")
    }
    return (serve, port)
}

/// The m3search binary SwiftPM built next to the test bundle.
var m3searchBinary: URL {
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0])
    for dir in [testBinary.deletingLastPathComponent(), Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("m3search")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return testBinary.deletingLastPathComponent().appendingPathComponent("m3search")
}

/// Runs m3search to completion; stdout through a pipe read to the end, stderr to a file.
/// `environment` is laid over the test's own.
func runM3Search(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("m3-err-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errURL) }
    let process = Process()
    process.executableURL = m3searchBinary
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = try FileHandle(forWritingTo: errURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: out, as: UTF8.self),
            (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

/// The first line a pipe delivers, read on a background thread (the server keeps it open).
func firstLine(of handle: FileHandle, timeout: TimeInterval) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            var bytes: [UInt8] = []
            while true {
                let data = handle.readData(ofLength: 1)
                if data.isEmpty { break }
                if data.first == UInt8(ascii: "\n") { break }
                bytes.append(contentsOf: data)
            }
            if bytes.isEmpty {
                continuation.resume(throwing: XCTSkip("m3search serve printed nothing on stdout"))
            } else {
                continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
            }
        }
    }
}
