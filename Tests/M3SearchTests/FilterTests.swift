import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Filtered search (issue 14 item 1) against an exhaustive ranking of every chunk restricted,
/// by the test itself, to the documents the filter should allow.
final class FilterTests: XCTestCase {
    /// Every chunk of the index ranked exhaustively (exact dense, sparse, ColBERT and fused
    /// scores), the reference the filtered searches are held to.
    func exhaustive(_ index: SearchIndex, _ e: Embedding, mode: SearchOptions.Mode) throws -> [SearchResult] {
        try index.exhaustiveSearch(encoded: e, options: SearchOptions(k: 100_000, mode: mode, groupByDocument: false))
    }

    /// What a filtered search must return, from the exhaustive ranking restricted to the
    /// allowed chunks: candidates are the allowed chunks' dense top n and sparse top n (all
    /// of them when no more than n are allowed), ranked by their exact fused scores.
    func expected(_ all: [SearchResult], allowed: (SearchResult) -> Bool, mode: SearchOptions.Mode, n: Int, k: Int) -> [Int64] {
        let matching = all.filter(allowed)
        func byScore(_ key: KeyPath<SearchResult, Float?>) -> [SearchResult] {
            matching.filter { ($0[keyPath: key] ?? 0) > 0 || key == \SearchResult.dense }
                .sorted { ($0[keyPath: key] ?? -.infinity, -$0.chunkID) > ($1[keyPath: key] ?? -.infinity, -$1.chunkID) }
        }
        var pool: [SearchResult]
        switch mode {
        case .dense: pool = matching
        case .sparse: pool = matching.filter { ($0.sparse ?? 0) > 0 }
        case .hybrid, .colbert:
            if matching.count <= n {
                pool = matching
            } else {
                let ids = Set(byScore(\.dense).prefix(n).map(\.chunkID)).union(byScore(\.sparse).prefix(n).map(\.chunkID))
                pool = matching.filter { ids.contains($0.chunkID) }
            }
        }
        // `all` is in exhaustive order (fused score, then chunk id), which the pool keeps.
        return Array(pool.prefix(k).map(\.chunkID))
    }

    /// The corpus (80 documents, ~2,000 chunks) filtered by file name to 100%, 30%, 3% and
    /// 1% of its documents: dense, sparse and hybrid results equal the restricted exhaustive
    /// ranking, with candidates both below and above the matching chunk count.
    func testFilteredSearchEqualsRestrictedExhaustiveRanking() throws {
        let index = try SearchEngineTests.corpusIndex()
        let names = try FileManager.default.contentsOfDirectory(atPath: fixture("corpus")).sorted()
        XCTAssertEqual(names.count, 80)
        // Every third name, so the matching documents are spread over the corpus.
        let selections: [(String, [String])] = [
            ("100%", names), ("30%", stride(from: 0, to: 72, by: 3).map { names[$0] }),
            ("3%", [names[7], names[41]]), ("1%", [names[60]]),
        ]
        for q in SearchEngineTests.queries.prefix(3) + SearchEngineTests.queries.suffix(2) {
            let e = try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
            let dense = try exhaustive(index, e, mode: .dense)
            let sparse = try exhaustive(index, e, mode: .sparse)
            let hybrid = try exhaustive(index, e, mode: .hybrid)
            for (label, chosen) in selections {
                let allowedNames = Set(chosen)
                let allowed = { (r: SearchResult) in allowedNames.contains((r.path as NSString).lastPathComponent) }
                // Patterns without "/": the file name at any depth.
                let filter = SearchFilter(paths: chosen)
                for (mode, all) in [(SearchOptions.Mode.dense, dense), (.sparse, sparse), (.hybrid, hybrid)] {
                    for candidates in [10, 100] {
                        let options = SearchOptions(k: 10, mode: mode, candidates: candidates, groupByDocument: false,
                                                    efSearch: 400, filter: filter)
                        let report = try index.search(encoded: e, options: options)
                        let want = expected(all, allowed: allowed, mode: mode, n: candidates, k: 10)
                        XCTAssertEqual(report.results.map(\.chunkID), want, "\(q) \(label) \(mode) candidates \(candidates)")
                        XCTAssertTrue(report.results.allSatisfy(allowed), "\(label): a result outside the filter")
                        XCTAssertEqual(report.filterDocuments, chosen.count, label)
                        XCTAssertEqual(report.filterChunks, all.filter(allowed).count, label)
                    }
                }
            }
        }
    }

    /// Grouped by document (the default), a filtered search returns the best chunk of each
    /// of the best matching documents, like the restricted exhaustive ranking.
    func testGroupedFilteredSearch() throws {
        let index = try SearchEngineTests.corpusIndex()
        let names = try FileManager.default.contentsOfDirectory(atPath: fixture("corpus")).sorted()
        let chosen = Set(stride(from: 1, to: 80, by: 10).map { names[$0] })
        for q in SearchEngineTests.queries.prefix(4) {
            let e = try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
            let report = try index.search(encoded: e, options: SearchOptions(k: 5, filter: SearchFilter(paths: Array(chosen))))
            var seen = Set<String>()
            let want = try exhaustive(index, e, mode: .hybrid)
                .filter { chosen.contains(($0.path as NSString).lastPathComponent) && seen.insert($0.path).inserted }
                .prefix(5).map(\.chunkID)
            XCTAssertEqual(report.results.map(\.chunkID), Array(want), q)
        }
    }

    /// A filter nothing matches gives no results and no error, in every mode.
    func testFilterMatchingNothingGivesNoResults() throws {
        let index = try SearchEngineTests.corpusIndex()
        for mode in SearchOptions.Mode.allCases {
            let report = try index.search("generators", options: SearchOptions(mode: mode, filter: SearchFilter(paths: ["*.nothing"])))
            XCTAssertEqual(report.results.count, 0, "\(mode)")
            XCTAssertEqual(report.filterChunks, 0)
        }
        let none = try index.search("generators", options: SearchOptions(filter: SearchFilter(metadata: ["lang": "xx"])))
        XCTAssertTrue(none.results.isEmpty)
    }

    /// Metadata (every pair must match) and modification times, on documents added through
    /// the library and on files with set mtimes, against the same filter applied by hand.
    func testMetadataAndModifiedFilters() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-filter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("files/sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = try SearchIndex(path: dir.appendingPathComponent("f.m3index").path, model: try SearchEngineTests.model(),
                                    options: IndexOptions(maxLength: 32, overlap: 4))
        let words = ["lighthouse", "volcano", "harbour", "glacier", "orchard", "comet", "desert", "river"]
        var docs: [DocumentInput] = []
        for i in 0..<24 {
            let text = (0..<12).map { words[($0 * 7 + i) % words.count] }.joined(separator: " ")
            docs.append(DocumentInput(id: "doc\(i)", text: text,
                                      metadata: ["lang": i % 3 == 0 ? "de" : "en", "group": "g\(i % 4)"]))
        }
        try index.add(docs)
        // Files with known mtimes: 2020, 2022, 2024 (one a level down).
        let years = [("a.txt", 2020), ("b.md", 2022), ("sub/c.txt", 2024)]
        for (name, year) in years {
            let url = dir.appendingPathComponent("files/\(name)")
            try Data("the \(name) file about a lighthouse near a volcano, written in \(year)".utf8).write(to: url)
            let date = try XCTUnwrap(SearchFilter.date("\(year)-06-01"))
            try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: url.path)
        }
        _ = try index.indexFiles([dir.appendingPathComponent("files").path])
        XCTAssertEqual(index.documentCount, 27)

        let q = try index.model.encode(["lighthouse volcano"], options: EncodeOptions(maxLength: 512))[0]
        let all = try exhaustive(index, q, mode: .hybrid)
        let meta = Dictionary(uniqueKeysWithValues: docs.map { ($0.id, $0.metadata!) })
        let canonical = try XCTUnwrap(Ingestion.canonicalPath(dir.appendingPathComponent("files").path))
        let mtimes: [String: Int] = Dictionary(uniqueKeysWithValues: years.map { (canonical + "/" + $0.0, $0.1) })
        let cases: [(SearchFilter, (SearchResult) -> Bool)] = [
            (SearchFilter(metadata: ["lang": "de"]), { meta[$0.path]?["lang"] == "de" }),
            (SearchFilter(metadata: ["lang": "en", "group": "g1"]), { meta[$0.path]?["lang"] == "en" && meta[$0.path]?["group"] == "g1" }),
            (SearchFilter(modifiedAfter: SearchFilter.date("2021-01-01"), modifiedBefore: SearchFilter.date("2023-01-01")),
             { mtimes[$0.path] == 2022 }),
            (SearchFilter(modifiedBefore: SearchFilter.date("2023-01-01T00:00:00Z")), { (mtimes[$0.path] ?? 9999) < 2023 }),
            (SearchFilter(paths: ["*.txt"]), { $0.path.hasSuffix(".txt") }),
            (SearchFilter(paths: [canonical + "/*"]), { $0.path == canonical + "/a.txt" || $0.path == canonical + "/b.md" }),
            (SearchFilter(paths: ["sub/"]), { $0.path.hasSuffix("/sub/c.txt") }),
            (SearchFilter(paths: ["doc1*"], metadata: ["group": "g2"]), { $0.path.hasPrefix("doc1") && meta[$0.path]?["group"] == "g2" }),
        ]
        for (filter, allows) in cases {
            let report = try index.search(encoded: q, options: SearchOptions(k: 100, groupByDocument: false, filter: filter))
            let want = expected(all, allowed: allows, mode: .hybrid, n: 100, k: 100)
            XCTAssertFalse(want.isEmpty, "\(filter)")
            XCTAssertEqual(report.results.map(\.chunkID), want, "\(filter)")
            // The reference predicate of the library agrees.
            for r in all {
                let mtime = mtimes[r.path].map { SearchFilter.date("\($0)-06-01")!.timeIntervalSince1970 } ?? Date().timeIntervalSince1970
                XCTAssertEqual(filter.allows(path: r.path, metadata: meta[r.path], mtime: mtime), allows(r), "\(filter) \(r.path)")
            }
        }
    }

    func testPathPatterns() {
        let table: [(String, String, Bool)] = [
            ("*.md", "/a/b/notes.md", true), ("*.md", "notes.md", true), ("*.md", "/a/notes.txt", false),
            ("notes.md", "/x/y/notes.md", true), ("note?.md", "/x/notes.md", true), ("[nm]otes.md", "/motes.md", true),
            ("/a/*.md", "/a/notes.md", true), ("/a/*.md", "/a/b/notes.md", false), ("/a/**/*.md", "/a/notes.md", true),
            ("/a/**/*.md", "/a/b/c/notes.md", true), ("/a/**", "/a/b/c", true), ("/a/**", "/b/a/c", false),
            ("**/b/*.md", "/a/b/n.md", true), ("b/", "/a/b/c/n.md", true), ("b/", "/a/b", false), ("/a/b/", "/a/b/n.md", true),
            ("/a/b/", "/x/a/b/n.md", false), ("docs/*.md", "docs/a.md", true), ("docs/*.md", "x/docs/a.md", false),
            ("*", "/anything/at/all", true), ("*.MD", "/a/notes.md", false),
        ]
        for (pattern, path, want) in table {
            XCTAssertEqual(PathPattern(pattern).matches(path), want, "\(pattern) vs \(path)")
        }
    }

    func testDates() throws {
        let utc = { (s: String) in SearchFilter.date(s)?.timeIntervalSince1970 }
        XCTAssertEqual(utc("2024-05-01"), 1_714_521_600)
        XCTAssertEqual(utc("2024-05-01T12:30"), 1_714_566_600)
        XCTAssertEqual(utc("2024-05-01T12:30:00Z"), 1_714_566_600)
        XCTAssertEqual(utc("2024-05-01T14:30:00+02:00"), 1_714_566_600)
        XCTAssertEqual(utc("2024-05-01T14:30+02:00"), 1_714_566_600)
        XCTAssertEqual(utc("2024-05-01T12:30:00.500Z"), 1_714_566_600.5)
        for bad in ["", "yesterday", "2024-13-01", "2024-05", "2024-05-01T25:00", "05/01/2024"] {
            XCTAssertNil(SearchFilter.date(bad), bad)
        }
    }

    /// Options that cannot be a filter are invalid arguments, not crashes.
    func testInvalidFilters() throws {
        let index = try SearchEngineTests.corpusIndex()
        for filter in [SearchFilter(paths: [""]), SearchFilter(paths: Array(repeating: "*", count: 1001)),
                       SearchFilter(modifiedAfter: Date(timeIntervalSince1970: .infinity))] {
            XCTAssertThrowsError(try index.search("x", options: SearchOptions(filter: filter))) { error in
                XCTAssertEqual((error as? M3SearchError)?.kind, .invalidArgument)
            }
        }
    }

    /// `m3search query --path/--modified-after/--modified-before` through the binary, run in
    /// the indexed folder's parent (relative patterns with "/" start there), against the
    /// restricted exhaustive ranking; a malformed filter is a usage error (64).
    func testCommandLineFilters() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-cli-filter-\(UUID().uuidString)")
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs.appendingPathComponent("sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let corpus = try FileManager.default.contentsOfDirectory(atPath: fixture("corpus")).sorted().prefix(30)
        for (i, name) in corpus.enumerated() {
            let text = try String(contentsOfFile: fixture("corpus/" + name), encoding: .utf8).prefix(600)
            let url = docs.appendingPathComponent((i % 4 == 0 ? "sub/" : "") + (i % 2 == 0 ? name : name + ".txt"))
            try Data(text.utf8).write(to: url)
            try FileManager.default.setAttributes([.modificationDate: SearchFilter.date("20\(10 + i)-03-01")!], ofItemAtPath: url.path)
        }
        let index = dir.appendingPathComponent("c.m3index").path
        let model = fixture("models/tiny-safetensors")
        let indexed = try runM3Search(["index", "docs", "--index", index, "--model", model, "--max-length", "48", "--overlap", "4"], stdin: "",
                                      currentDirectory: dir)
        XCTAssertEqual(indexed.status, 0, indexed.stderr)

        let opened = try SearchIndex(path: index, model: try SearchEngineTests.model())
        XCTAssertEqual(opened.documentCount, 30)
        let query = "classes and inheritance"
        let e = try opened.model.encode([query], options: EncodeOptions(maxLength: 512))[0]
        let all = try exhaustive(opened, e, mode: .hybrid)
        let mtimes = Dictionary(uniqueKeysWithValues: try opened.store.documents().map { ($0.path, $0.mtime) })
        let y2020 = SearchFilter.date("2020-01-01")!.timeIntervalSince1970, y2030 = SearchFilter.date("2030-01-01")!.timeIntervalSince1970
        let cases: [([String], (String) -> Bool)] = [
            (["--path", "*.txt"], { $0.hasSuffix(".txt") }),
            (["--path", "docs/sub/"], { $0.contains("/docs/sub/") }),
            (["--path", "docs/*.txt", "--path", "*.html"], { ($0.hasSuffix(".txt") && !$0.contains("/sub/")) || $0.hasSuffix(".html") }),
            (["--modified-after", "2020-01-01", "--modified-before", "2030-01-01"], { mtimes[$0]! >= y2020 && mtimes[$0]! < y2030 }),
            (["--path", "sub/", "--modified-after", "2020-01-01T00:00"], { $0.contains("/sub/") && mtimes[$0]! >= y2020 }),
            (["--path", "*.nothing"], { _ in false }),
        ]
        for (flags, allows) in cases {
            let run = try runM3Search(["query", query, "--index", index, "--model", model, "--json", "--k", "4", "--chunks"] + flags,
                                      stdin: "", currentDirectory: dir)
            XCTAssertEqual(run.status, 0, "\(flags): \(run.stderr)")
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], run.stdout)
            let results = try XCTUnwrap(json["results"] as? [[String: Any]])
            let want = all.filter { allows($0.path) }.prefix(4)
            XCTAssertEqual(results.map { "\($0["path"] as? String ?? "")#\($0["chunk"] as? Int ?? -1)" },
                           want.map { "\($0.path)#\($0.chunk)" }, "\(flags)")
            if flags != ["--path", "*.nothing"] { XCTAssertFalse(want.isEmpty, "\(flags)") }
        }
        for bad in [["--meta", "novalue"], ["--meta", "=x"], ["--modified-after", "soon"], ["--path", ""]] {
            let run = try runM3Search(["query", query, "--index", index, "--model", model] + bad, stdin: "")
            XCTAssertEqual(run.status, 64, "\(bad): \(run.stderr)")
        }
    }
}
