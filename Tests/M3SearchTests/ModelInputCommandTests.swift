import Foundation
import XCTest

/// `m3search encode` on hostile model folders and input (issue 16 items 7–10): each must
/// end by itself, within seconds, with exit status 65 (EX_DATAERR, the exit-code table's
/// code for a bad model or input) and a message naming the problem —
/// never a signal or a hang.
final class ModelInputCommandTests: XCTestCase {
    func testHugeConfigNumbersAreClearErrors() throws {
        for (key, value) in [("hidden_size", "1e300"), ("hidden_size", "1e19"), ("num_hidden_layers", "16777216"),
                             ("layer_norm_eps", "\"x\"")] {
            let folder = try modelFolder()
            let config = folder.appendingPathComponent("config.json")
            let text = try String(contentsOf: config, encoding: .utf8)
            let edited = try NSRegularExpression(pattern: "\"\(key)\": *[^,}]+").stringByReplacingMatches(
                in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "\"\(key)\": \(NSRegularExpression.escapedTemplate(for: value))")
            XCTAssertNotEqual(edited, text)
            try Data(edited.utf8).write(to: config)
            let run = try encode(folder: folder.path, stdin: "{\"text\": \"x\"}\n")
            XCTAssertEqual(run.reason, .exit, "\(key) = \(value): \(run.stderr)")
            XCTAssertEqual(run.status, 65, "\(key) = \(value)")
            XCTAssertTrue(run.stderr.contains(key), "\(key) = \(value): \(run.stderr)")
        }
    }

    func testFIFOAsModelFileIsAClearError() throws {
        let folder = try modelFolder()
        let spm = folder.appendingPathComponent("sentencepiece.bpe.model")
        try FileManager.default.removeItem(at: spm)
        XCTAssertEqual(mkfifo(spm.path, 0o600), 0)
        let run = try encode(folder: folder.path, stdin: "{\"text\": \"x\"}\n")
        XCTAssertEqual(run.reason, .exit, run.stderr)
        XCTAssertEqual(run.status, 65)
        XCTAssertTrue(run.stderr.contains("FIFO") && run.stderr.contains("sentencepiece.bpe.model"), run.stderr)
    }

    /// A line over 8 MiB is refused with its number after the lines before it were
    /// encoded; it is never held whole (memory stays bounded whatever its length).
    func testOverlongInputLineIsRefusedWithItsNumber() throws {
        let long = "{\"text\": \"" + String(repeating: "a", count: 9 << 20) + "\"}\n"
        let run = try encode(folder: fixture("models/tiny-safetensors"), stdin: "{\"text\": \"first\"}\n\n" + long + "{\"text\": \"after\"}\n")
        XCTAssertEqual(run.reason, .exit, run.stderr)
        XCTAssertEqual(run.status, 65)
        XCTAssertTrue(run.stderr.contains("line 3") && run.stderr.contains("8 MiB"), run.stderr)
        XCTAssertEqual(run.stdout.split(separator: "\n").count, 1, "the line before is encoded")
    }

    // MARK: Helpers

    struct Run { let status: Int32; let reason: Process.TerminationReason; let stdout: String; let stderr: String }

    /// Runs `m3search encode --model folder` with a cache folder of its own; kills it and
    /// fails after 60 s (a hang).
    func encode(folder: String, stdin: String) throws -> Run {
        let scratch = try temporaryFolder()
        let child = try M3SearchChild(["encode", "--model", folder], stdin: stdin,
                                      environment: ["M3SEARCH_CACHE_DIR": scratch.appendingPathComponent("cache").path])
        let run = child.finish(seconds: 60)
        return Run(status: run.status, reason: child.process.terminationReason, stdout: run.stdout, stderr: run.stderr)
    }

    /// A copy of the tiny model: config.json copied, the rest linked.
    func modelFolder() throws -> URL {
        let source = URL(fileURLWithPath: fixture("models/tiny-safetensors"))
        let folder = try temporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) {
            let file = source.appendingPathComponent(name).resolvingSymlinksInPath()
            if name == "config.json" {
                try FileManager.default.copyItem(at: file, to: folder.appendingPathComponent(name))
            } else {
                try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name), withDestinationURL: file)
            }
        }
        return folder
    }

    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3-modelinput-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
