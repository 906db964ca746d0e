import Foundation
import XCTest

/// `m3search index --jsonl FILE` and the ignore files, through the built binary (issue 14
/// item 3). What ends up in the index is read back with `m3search export` (one line per
/// chunk with its document id and metadata) and checked against the documents the test
/// wrote, not against what `index` says it did.
final class IndexCommandInputTests: XCTestCase {
    static let model = fixture("models/tiny-safetensors")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-input-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ relative: String, _ text: String) throws {
        let url = dir.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// Each document in the index: its id, its chunks' text joined in order, its metadata.
    func exported(_ index: String) throws -> [String: (text: String, metadata: [String: String])] {
        let run = try runM3Search(["export", "--index", index], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        var documents: [String: (text: String, metadata: [String: String])] = [:]
        var chunks: [String: [(Int, String)]] = [:]
        for line in run.stdout.split(separator: "\n").dropFirst() {  // the first line is the header
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let id = try XCTUnwrap(object["doc_id"] as? String)
            chunks[id, default: []].append((try XCTUnwrap(object["chunk"] as? Int), try XCTUnwrap(object["text"] as? String)))
            let metadata = (object["metadata"] as? [String: Any] ?? [:]).mapValues { "\($0)" }
            documents[id] = ("", metadata)
        }
        for (id, parts) in chunks {
            // Chunks overlap by a few tokens; the first chunk alone is enough for the short texts here.
            documents[id]?.text = try XCTUnwrap(parts.min { $0.0 < $1.0 }?.1)
        }
        return documents
    }

    func info(_ index: String) throws -> [String: Any] {
        let run = try runM3Search(["info", "--index", index, "--json"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    }

    /// A BEIR corpus.jsonl and a file of {"id", …} lines in one run. Bad lines are named by
    /// file and line on stderr and skipped; the good lines after them are still indexed, ids
    /// are kept as given, title and text are joined, metadata is stored.
    func testJSONLCorporaWithBadLines() throws {
        let beir = dir.appendingPathComponent("corpus.jsonl").path
        try write("corpus.jsonl", [
            #"{"_id": "doc-1", "title": "Lighthouses", "text": "Lighthouses guide ships past the rocks at night."}"#,
            #"{"_id": "doc-2", "title": "", "text": "Volcanoes erupt molten lava.", "metadata": {"source": "wiki"}}"#,
            #"{"_id": "doc-3", "title": "broken"#,                                 // line 3: not JSON
            #"{"_id": "doc-4", "title": "no text field"}"#,                         // line 4: no text
            #"{"_id": "doc-1", "text": "the same id again"}"#,                      // line 5: duplicate id
            #"{"_id": "doc-6", "title": "Bees", "text": "Bees make honey in hives."}"#,
        ].joined(separator: "\n") + "\n")
        let plain = dir.appendingPathComponent("plain.jsonl").path
        try write("plain.jsonl", [
            #"{"id": "p1", "title": "Glaciers", "text": "Glaciers carve valleys slowly.", "metadata": {"lang": "en", "year": 2024}}"#,
            #"[1, 2, 3]"#,                                                          // line 2: not an object
            "",
            #"{"id": "p2", "text": "Owls hunt at dusk."}"#,
        ].joined(separator: "\n"))
        let index = dir.appendingPathComponent("j.m3index").path
        let run = try runM3Search(["index", "--jsonl", beir, "--jsonl", plain, "--index", index, "--model", Self.model,
                                   "--max-length", "32", "--overlap", "4"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.hasPrefix("indexed 5, unchanged 0, skipped 4,"), run.stdout)
        let warnings = run.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        XCTAssertEqual(warnings.count, 4, run.stderr)
        for (file, line) in [(beir, 3), (beir, 4), (beir, 5), (plain, 2)] {
            XCTAssertTrue(warnings.contains { $0.hasPrefix("warning: \(file):\(line): skipped") }, "\(file):\(line) in \(run.stderr)")
        }
        XCTAssertTrue(warnings.contains { $0.contains(":5: skipped") && $0.contains("doc-1") }, "the duplicate id is named")

        let documents = try exported(index)
        XCTAssertEqual(Set(documents.keys), ["doc-1", "doc-2", "doc-6", "p1", "p2"])
        XCTAssertEqual(documents["doc-1"]?.text, "Lighthouses Lighthouses guide ships past the rocks at night.")
        XCTAssertEqual(documents["doc-2"]?.text, "Volcanoes erupt molten lava.", "an empty title adds nothing")
        XCTAssertEqual(documents["p2"]?.text, "Owls hunt at dusk.")
        XCTAssertEqual(documents["doc-2"]?.metadata, ["source": "wiki"])
        XCTAssertEqual(documents["p1"]?.metadata, ["lang": "en", "year": "2024"])
        XCTAssertEqual(try info(index)["documents"] as? Int, 5)

        // The ids are what a query returns.
        let query = try runM3Search(["query", "Owls hunt at dusk.", "--index", index, "--model", Self.model, "--k", "1", "--json"], stdin: "")
        XCTAssertEqual(query.status, 0, query.stderr)
        let results = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(query.stdout.utf8)) as? [String: Any])?["results"] as? [[String: Any]])
        XCTAssertEqual(results.first?["path"] as? String, "p2")

        // A second run over the same files encodes nothing and reports the same bad lines.
        let again = try runM3Search(["index", "--jsonl", beir, "--jsonl", plain, "--index", index, "--model", Self.model], stdin: "")
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.hasPrefix("indexed 0, unchanged 5, skipped 4,"), again.stdout)
    }

    /// A missing JSONL file is an error that names it, not an empty run.
    func testMissingJSONLFileIsAnError() throws {
        let missing = dir.appendingPathComponent("nowhere.jsonl").path
        let run = try runM3Search(["index", "--jsonl", missing, "--index", dir.appendingPathComponent("m.m3index").path,
                                   "--model", Self.model], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains(missing), run.stderr)
    }

    /// .gitignore (inside a git work tree) and .ignore (anywhere) are read by default, with
    /// .ignore overriding .gitignore in the same folder, as ripgrep does; --no-ignore indexes
    /// everything. The expected sets follow gitignore(5) for the rules written here.
    func testIgnoreFilesByDefaultAndNoIgnore() throws {
        let files = ["docs/keep.txt": "Lighthouses guide ships.",
                     "docs/noise.log": "debug noise",
                     "docs/important.log": "The important log about glaciers.",
                     "docs/build/out.txt": "generated output",
                     "docs/sub/draft.md": "a draft about owls",
                     "docs/sub/final.md": "The final text about owls.",
                     "docs/secret.txt": "a secret"]
        for (path, text) in files { try write(path, text) }
        try write("docs/.gitignore", "*.log\nbuild/\n")
        try write("docs/.ignore", "secret.txt\n!important.log\n")
        try write("docs/sub/.gitignore", "draft.md\n")
        // .gitignore applies inside a git work tree: the walker takes a folder holding .git as its top.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("docs/.git/info"), withIntermediateDirectories: true)

        func indexed(_ extra: [String], name: String) throws -> Set<String> {
            let index = dir.appendingPathComponent(name).path
            let run = try runM3Search(["index", dir.appendingPathComponent("docs").path, "--index", index, "--model", Self.model,
                                       "--max-length", "32", "--overlap", "4"] + extra, stdin: "")
            XCTAssertEqual(run.status, 0, run.stderr)
            // Document ids are canonical absolute paths: keep what follows the indexed folder.
            return Set(try exported(index).keys.map { id in
                guard let r = id.range(of: "/docs/") else { XCTFail("unexpected id \(id)"); return id }
                return "docs/" + id[r.upperBound...]
            })
        }
        XCTAssertEqual(try indexed([], name: "default.m3index"), ["docs/keep.txt", "docs/important.log", "docs/sub/final.md"])
        XCTAssertEqual(try indexed(["--no-ignore"], name: "all.m3index"), Set(files.keys))
        // --exclude still applies with --no-ignore, in gitignore syntax (a name at any depth).
        XCTAssertEqual(try indexed(["--no-ignore", "--exclude", "*.md"], name: "nomd.m3index"),
                       Set(files.keys.filter { !$0.hasSuffix(".md") }))
    }
}
