import Foundation
import XCTest

/// The `m3search` binary end to end: its JSON Lines contract against FlagEmbedding's
/// reference outputs, and its errors.
final class CommandLineTests: XCTestCase {
    func testEncodeMatchesFlagEmbedding() throws {
        let reference = try loadJSON("reference/tiny-bin.json")
        let blocks = reference["encodings"] as! [[String: Any]]
        for block in blocks {
            let maxLength = block["max_length"] as! Int
            let items = block["items"] as! [[String: Any]]
            let input = items.map { jsonLine(["text": $0["text"] as! String]) }.joined()
            let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--max-length", String(maxLength)], stdin: input)
            XCTAssertEqual(run.status, 0, run.stderr)
            let lines = run.stdout.split(separator: "\n")
            XCTAssertEqual(lines.count, items.count)
            for (line, item) in zip(lines, items) {
                let out = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                XCTAssertEqual(out["input_ids"] as? [Int], item["input_ids"] as? [Int])
                XCTAssertLessThanOrEqual(maxDiff(out["dense"], item["dense"]), 1e-4)
                let ours = out["sparse"] as! [String: Double], theirs = item["sparse"] as! [String: Double]
                // Keys on one side only must be float noise at relu's 0 boundary.
                for k in Set(ours.keys).symmetricDifference(theirs.keys) {
                    XCTAssertLessThanOrEqual(ours[k] ?? theirs[k]!, 1e-5, "sparse key \(k) on one side only")
                }
                for k in Set(ours.keys).union(theirs.keys) { XCTAssertEqual(ours[k] ?? 0, theirs[k] ?? 0, accuracy: 1e-4) }
                let oc = out["colbert"] as! [[Double]], tc = item["colbert"] as! [[Double]]
                XCTAssertEqual(oc.count, tc.count)
                for (a, b) in zip(oc, tc) { XCTAssertLessThanOrEqual(maxDiff(a, b), 1e-4) }
            }
        }
    }

    func testScoreMatchesFlagEmbedding() throws {
        let reference = try loadJSON("reference/tiny-bin.json")
        let pairs = reference["scores"] as! [[String: Any]]
        let input = pairs.map { jsonLine(["query": $0["query"] as! String, "passage": $0["passage"] as! String]) }.joined()
        let run = try runM3Search(["score", "--model", fixture("models/tiny-bin"), "--weights", "0.4,0.3,0.3"], stdin: input)
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, pairs.count)
        for (line, pair) in zip(lines, pairs) {
            let out = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Double]
            for key in ["dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense"] {
                XCTAssertEqual(out[key] ?? .infinity, pair[key] as! Double, accuracy: 1e-4, key)
            }
        }
    }

    func testMissingModelFolderIsAClearError() throws {
        let run = try runM3Search(["encode", "--model", "/nonexistent/bge-m3"], stdin: "{\"text\": \"x\"}\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("/nonexistent/bge-m3"), run.stderr)
    }

    func testMissingHeadFileIsAClearError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-nohead-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = URL(fileURLWithPath: fixture("models/tiny-bin"))
        for name in try FileManager.default.contentsOfDirectory(atPath: src.path) where name != "sparse_linear.pt" {
            let target = src.appendingPathComponent(name).resolvingSymlinksInPath()
            try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: target)
        }
        let run = try runM3Search(["encode", "--model", dir.path], stdin: "{\"text\": \"x\"}\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("sparse_linear.pt"), run.stderr)
    }

    func testMalformedInputLineIsAClearError() throws {
        let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin")], stdin: "{\"text\": \"ok\"}\nnot json\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("line 2"), run.stderr)
    }

    func testMalformedWeightsAreAClearError() throws {
        let run = try runM3Search(["score", "--model", fixture("models/tiny-bin"), "--weights", "0.4,abc"], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("weights"), run.stderr)
    }
}

// MARK: - Helpers

func fixture(_ path: String) -> String {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        url = url.deletingLastPathComponent()
    }
    return url.appendingPathComponent("Fixtures").appendingPathComponent(path).path
}

func loadJSON(_ path: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture(path)))) as! [String: Any]
}

func jsonLine(_ object: [String: String]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
}

func maxDiff(_ a: Any?, _ b: Any?) -> Double {
    guard let a = a as? [Double], let b = b as? [Double], a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
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

struct RunResult { let status: Int32; let stdout: String; let stderr: String }

func runM3Search(_ arguments: [String], stdin: String) throws -> RunResult {
    // stdin and stderr go through temporary files and stdout through a pipe read to the
    // end, so large outputs cannot deadlock.
    let tmp = FileManager.default.temporaryDirectory
    let inURL = tmp.appendingPathComponent("m3-in-\(UUID().uuidString)")
    let errURL = tmp.appendingPathComponent("m3-err-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: inURL); try? FileManager.default.removeItem(at: errURL) }
    try Data(stdin.utf8).write(to: inURL)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let process = Process()
    process.executableURL = m3searchBinary
    process.arguments = arguments
    let output = Pipe()
    process.standardInput = try FileHandle(forReadingFrom: inURL)
    process.standardOutput = output
    process.standardError = try FileHandle(forWritingTo: errURL)
    try process.run()
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errData = (try? Data(contentsOf: errURL)) ?? Data()
    return RunResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errData, as: UTF8.self))
}
