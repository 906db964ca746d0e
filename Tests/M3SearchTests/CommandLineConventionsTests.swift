import Foundation
@testable import M3Search
import M3TestSupport
import XCTest

/// What users expect of a command line by habit (issue 14 item 5), through the built
/// binary: --version, short flags, NO_COLOR and --color, a progress bar that fits the
/// terminal, and Ctrl-C during `index` ending with a summary and exit 130.
final class CommandLineConventionsTests: XCTestCase {
    static let model = fixture("models/tiny-safetensors")

    /// A folder of `count` small distinct text files, each naming a lighthouse.
    static func corpus(_ count: Int) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-conv-\(UUID().uuidString)")
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        for i in 1 ... count {
            try Data("Document \(i): the lighthouse at harbour \(i * 7 % 13) guides ships past the rocks.".utf8)
                .write(to: docs.appendingPathComponent(String(format: "d%03d.txt", i)))
        }
        return dir
    }

    func testVersionIsTheOneTheREADMEQuotes() throws {
        let run = try runM3Search(["--version"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        let version = run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(version.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression), version)
        let readme = try String(contentsOfFile: fixture("../README.md"), encoding: .utf8)
        XCTAssertTrue(readme.contains("m3search \(version)"), "README must name the version --version prints (\(version))")
    }

    /// ArgumentParser appends "(default: …)" to each option that has one: no help text
    /// may say it again. And the completion scripts complete paths for path options.
    func testHelpShowsEachDefaultOnceAndPathsComplete() throws {
        for command in [[], ["index"], ["query"], ["serve"], ["check"], ["info"], ["encode"], ["score"], ["eval"], ["tune"],
                        ["export"], ["import"]] {
            let help = try runM3Search(command + ["--help"], stdin: "")
            XCTAssertEqual(help.status, 0)
            let options = try XCTUnwrap(help.stdout.components(separatedBy: "OPTIONS:").last)
            // One block per option: from a line starting "  -" or "  <" to the next.
            for block in options.components(separatedBy: "\n  ").filter({ $0.hasPrefix("-") || $0.hasPrefix("<") }) {
                let mentions = block.lowercased().components(separatedBy: "default").count - 1
                    - block.components(separatedBy: "default.m3index").count + 1
                XCTAssertLessThanOrEqual(mentions, 1, "\(command): \(block)")
            }
        }
        XCTAssertTrue(try runM3Search(["index", "--help"], stdin: "").stdout.contains("(default: 512)"))
        let zsh = try runM3Search(["--generate-completion-script", "zsh"], stdin: "").stdout
        for option in ["{-i,--index}", "{-m,--model}", "--queries", "--qrels", "--run-out", "--out"] {
            let lines = zsh.split(separator: "\n").filter { $0.contains(option + "[") || $0.contains(option + "'[") }
            XCTAssertFalse(lines.isEmpty, option)
            for line in lines { XCTAssertTrue(line.contains(":_files"), "\(option) completes paths: \(line)") }
        }
        XCTAssertTrue(zsh.contains("{-m,--model}") && zsh.contains("_files -/"), "--model completes folders")
        XCTAssertTrue(zsh.contains("'*:paths:_files'"), "index's paths complete")
    }

    /// The short flags give the same bytes as the long ones; -k is honoured.
    func testShortFlagsMeanTheLongOnes() throws {
        let dir = try Self.corpus(4)
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = dir.appendingPathComponent("c.m3index").path
        let built = try runM3Search(["index", dir.appendingPathComponent("docs").path, "-i", index, "-m", Self.model,
                                     "--max-length", "32", "--overlap", "4"], stdin: "")
        XCTAssertEqual(built.status, 0, built.stderr)
        let short = try runM3Search(["query", "lighthouse ships", "-i", index, "-m", Self.model, "-k", "2", "-j"], stdin: "")
        let long = try runM3Search(["query", "lighthouse ships", "--index", index, "--model", Self.model, "--k", "2", "--json"], stdin: "")
        XCTAssertEqual(short.status, 0, short.stderr)
        XCTAssertEqual(short.stdout, long.stdout)
        let results = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(short.stdout.utf8)) as? [String: Any])?["results"] as? [Any])
        XCTAssertEqual(results.count, 2)
        let info = try runM3Search(["info", "-i", index, "-j"], stdin: "")
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
    }

    /// On a terminal query terms are bold unless NO_COLOR is set (non-empty) or --color never;
    /// --color always styles a pipe too.
    func testColorFollowsNoColorAndTheFlag() throws {
        let dir = try Self.corpus(3)
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = dir.appendingPathComponent("c.m3index").path
        _ = try runM3Search(["index", dir.appendingPathComponent("docs").path, "-i", index, "-m", Self.model,
                             "--max-length", "32", "--overlap", "4"], stdin: "")
        let query = ["query", "lighthouse", "-i", index, "-m", Self.model, "-k", "1"]
        let escape = "\u{1B}["
        // The test run's own NO_COLOR (set by some CI systems) is removed where it would decide.
        let tty = try runM3SearchWith(query, environment: ["NO_COLOR": nil], terminal: true)
        XCTAssertEqual(tty.status, 0, tty.stdout)
        XCTAssertTrue(tty.stdout.contains(escape + "1mlighthouse"), "a terminal gets bold terms: \(tty.stdout)")
        let noColor = try runM3SearchWith(query, environment: ["NO_COLOR": "1"], terminal: true)
        XCTAssertTrue(noColor.stdout.contains("lighthouse"), noColor.stdout)
        XCTAssertFalse(noColor.stdout.contains(escape), "NO_COLOR: \(noColor.stdout)")
        let empty = try runM3SearchWith(query, environment: ["NO_COLOR": ""], terminal: true)
        XCTAssertTrue(empty.stdout.contains(escape), "an empty NO_COLOR does not count: \(empty.stdout)")
        let never = try runM3SearchWith(query + ["--color", "never"], environment: ["NO_COLOR": nil], terminal: true)
        XCTAssertFalse(never.stdout.contains(escape), never.stdout)
        let always = try runM3SearchWith(query + ["--color", "always"], environment: ["NO_COLOR": "1"])
        XCTAssertTrue(always.stdout.contains(escape + "1mlighthouse"), "the flag wins over NO_COLOR: \(always.stdout)")
        let pipe = try runM3SearchWith(query, environment: ["NO_COLOR": nil])
        XCTAssertFalse(pipe.stdout.contains(escape), pipe.stdout)
        XCTAssertEqual(try runM3SearchWith(query + ["--color", "sometimes"]).status, 64)
    }

    /// At 50 columns ($COLUMNS, the terminal reporting no size) and at 40 (the terminal's
    /// own size, TIOCGWINSZ) every redraw fits in one line, on one line; without a
    /// terminal there is no bar.
    func testProgressBarFitsTheTerminalAndRedrawsInPlace() throws {
        let dir = try Self.corpus(12)
        defer { try? FileManager.default.removeItem(at: dir) }
        let docs = dir.appendingPathComponent("docs").path
        for (columns, environment, prefix) in [(50, ["COLUMNS": "50"], ""), (40, ["COLUMNS": nil], "stty cols 40;")] {
            let index = dir.appendingPathComponent("p\(columns).m3index").path
            let run = try runM3SearchWith(["index", docs, "-i", index, "-m", Self.model, "--max-length", "32", "--overlap", "4",
                                           "--batch", "1"], environment: environment, terminal: true, shellPrefix: prefix)
            XCTAssertEqual(run.status, 0, run.stdout)
            // The terminal turns "\n" into "\r\n"; a redraw is "\r" + clear line + text.
            let lines = run.stdout.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n")
            let barLines = lines.filter { $0.contains(" files") }
            XCTAssertEqual(barLines.count, 1, "every redraw on one line: \(lines)")
            let draws = barLines.first.map { $0.components(separatedBy: "\r\u{1B}[2K").filter { !$0.isEmpty } } ?? []
            XCTAssertEqual(draws.count, 12, "one redraw per file: \(draws)")
            for draw in draws {
                XCTAssertLessThanOrEqual(draw.count, columns - 1, "\(columns) columns: \(draw)")
                XCTAssertTrue(draw.hasPrefix("[") && draw.contains("] "), draw)
            }
            XCTAssertTrue(draws.last?.contains("12/12 files") ?? false, "\(draws)")
            XCTAssertTrue(lines.contains { $0.hasPrefix("indexed 12, unchanged 0") }, "\(lines)")
        }
        let plain = try runM3SearchWith(["index", docs, "-i", dir.appendingPathComponent("plain.m3index").path, "-m", Self.model,
                                         "--max-length", "32", "--overlap", "4"], environment: ["COLUMNS": "50"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("files") || plain.stderr.contains("\r"), "no bar on a pipe: \(plain.stderr)")
    }

    /// SIGINT once documents are committed: the run stops between documents, prints its
    /// summary and "interrupted: …", exits 130, keeps what it committed; the same command
    /// then finishes, finding those documents unchanged.
    func testCtrlCEndsWithTheSummaryAndTheRerunResumes() throws {
        let count = 120
        let dir = try Self.corpus(count)
        defer { try? FileManager.default.removeItem(at: dir) }
        let docs = dir.appendingPathComponent("docs").path, index = dir.appendingPathComponent("c.m3index").path
        let arguments = ["index", docs, "-i", index, "-m", Self.model, "--max-length", "32", "--overlap", "4", "--batch", "1"]
        let child = try M3SearchChild(arguments)
        var committed = 0
        while child.process.isRunning && committed < 2 {
            if let c = try? KillCampaignTests.committedPaths(index).count { committed = c }
            usleep(3_000)
        }
        kill(child.process.processIdentifier, SIGINT)
        let run = child.finish(), stdout = run.stdout, stderr = run.stderr
        XCTAssertEqual(run.status, 130, "\(stdout)\n\(stderr)")
        XCTAssertTrue(stderr.hasSuffix("interrupted: rerun the same command to resume\n"), stderr)
        let kept = try KillCampaignTests.committedPaths(index).count
        XCTAssertGreaterThanOrEqual(kept, 2)
        XCTAssertLessThan(kept, count, "stopped early")
        XCTAssertTrue(stdout.hasPrefix("indexed \(kept), unchanged 0,"), "the summary counts what was committed: \(stdout)")

        let rerun = try runM3Search(arguments, stdin: "")
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertTrue(rerun.stdout.hasPrefix("indexed \(count - kept), unchanged \(kept),"), rerun.stdout)
        XCTAssertEqual(try KillCampaignTests.committedPaths(index).count, count)
    }

    /// A second SIGINT does not wait for the current document: exit 130 at once, no summary.
    func testASecondCtrlCExitsAtOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-conv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("docs"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Each document has thousands of chunks: encoding one takes a while even on a fast CPU.
        let words = ["lighthouse", "ship", "rock", "harbour", "coast", "night", "storm", "wave", "keeper", "lamp"]
        for i in 0 ..< 4 {
            let text = (0 ..< 40_000).map { words[($0 * 7 + $0 / 3 + i) % words.count] }.joined(separator: " ")
            try Data(text.utf8).write(to: dir.appendingPathComponent("docs/b\(i).txt"))
        }
        let index = dir.appendingPathComponent("c.m3index").path
        let child = try M3SearchChild(["index", dir.appendingPathComponent("docs").path, "-i", index, "-m", Self.model,
                                       "--max-length", "32", "--overlap", "4", "--batch", "1"])
        let process = child.process
        // Once the first document is committed (--batch 1), the second is being encoded. (Waiting
        // only for the index's creation let the first Ctrl-C land before the first document
        // began on a fast CPU: the run then stopped at once, before the second Ctrl-C.)
        func committed() -> Int {
            guard FileManager.default.fileExists(atPath: index) else { return 0 }
            return (try? KillCampaignTests.committedPaths(index).count) ?? 0
        }
        while process.isRunning && committed() < 1 { usleep(3_000) }
        kill(process.processIdentifier, SIGINT)
        while process.isRunning && !child.stderrSoFar.contains("stopping after the current document") { usleep(3_000) }
        kill(process.processIdentifier, SIGINT)
        let run = child.finish(), stdout = run.stdout, stderr = run.stderr
        XCTAssertEqual(run.status, 130, stderr)
        XCTAssertTrue(stdout.isEmpty, "no summary: \(stdout)")
        XCTAssertFalse(stderr.contains("interrupted:"), stderr)
        XCTAssertNoThrow(try KillCampaignTests.committedPaths(index), "the index still opens")
    }
}
