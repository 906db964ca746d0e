import Foundation
import M3Search
import M3TestSupport
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

        // The WAL was folded into the file, and the index is whole.
        let wal = (try? FileManager.default.attributesOfItem(atPath: index + "-wal")[.size] as? Int) ?? 0
        XCTAssertEqual(wal, 0, "checkpoint(TRUNCATE) leaves an empty WAL")
        let reopened = try SearchIndex(path: index, model: try TinyModel.get(), options: .existing())
        let report = try reopened.check()
        XCTAssertTrue(report.isSound, "\(report.problems)")
        XCTAssertEqual(report.documents, 12 + bulk.count)
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

/// The m3search binary SwiftPM built next to the test bundle. Spawned processes inherit
/// the test run's model cache (`TestModelCache`), installed here before any of them runs.
var m3searchBinary: URL {
    TestModelCache.install()
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0])
    for dir in [testBinary.deletingLastPathComponent(), Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("m3search")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return testBinary.deletingLastPathComponent().appendingPathComponent("m3search")
}

/// Runs m3search to completion; stdout through a pipe read to the end, stderr to a file.
func runM3Search(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("m3-err-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errURL) }
    let process = Process()
    process.executableURL = m3searchBinary
    process.arguments = arguments
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
