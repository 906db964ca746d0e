import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Document trees that fight back: symlink loops, FIFOs and unreadable files, files that
/// vanish or change mid-run, huge and sparse files, odd names, long lines, NUL bytes.
final class HostileTreeTests: XCTestCase {
    var dir: URL!
    var docs: String { dir.appendingPathComponent("docs").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-tree-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("docs").path, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        _ = chmod(docs + "/locked.txt", 0o644)
        try? FileManager.default.removeItem(at: dir)
    }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: docs + "/" + name))
    }

    func openIndex() throws -> SearchIndex {
        try SearchIndex(path: dir.appendingPathComponent("t.m3index").path, model: try BGEM3(folder: fixture("models/tiny-safetensors")), options: IndexOptions(maxLength: 32, overlap: 4))
    }

    /// Chunks of `path` in the index equal the file's text at their ranges and cover it.
    func assertIndexedWhole(_ index: SearchIndex, _ path: String, text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let doc = try XCTUnwrap(try index.store.document(path: path), "\(path) not indexed", file: file, line: line)
        let scalars = Array(text.unicodeScalars)
        let chunks = try index.store.chunkIDs(documentID: doc.id).compactMap { try index.store.chunk(id: $0) }
        XCTAssertEqual(chunks.first?.charStart, 0, file: file, line: line)
        XCTAssertEqual(chunks.last?.charEnd, scalars.count, file: file, line: line)
        for c in chunks {
            XCTAssertEqual(c.text, String(String.UnicodeScalarView(scalars[c.charStart ..< c.charEnd])), "chunk \(c.ordinal)", file: file, line: line)
        }
    }

    func testSymlinkLoopsAreNotFollowed() throws {
        try write("a.txt", "Alpha file about harbors.")
        try FileManager.default.createDirectory(atPath: docs + "/sub", withIntermediateDirectories: true)
        try write("sub/b.txt", "Beta file about meadows.")
        try FileManager.default.createSymbolicLink(atPath: docs + "/sub/loop", withDestinationPath: "..")
        try FileManager.default.createSymbolicLink(atPath: docs + "/self.txt", withDestinationPath: "self.txt")
        try FileManager.default.createSymbolicLink(atPath: docs + "/dangling.txt", withDestinationPath: "nowhere.txt")
        let index = try openIndex()
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.indexed, 2)
        XCTAssertEqual(Set(try index.store.documents().map(\.path)), [docs + "/a.txt", docs + "/sub/b.txt"])
        // A looping symlink named on the command line is a clear error, not a hang or a crash.
        XCTAssertThrowsError(try index.indexFiles([docs + "/self.txt"])) { error in
            XCTAssertTrue("\(error)".contains("self.txt does not exist"), "\(error)")
        }
    }

    func testFIFOsAndUnreadableFilesAreCountedNotFatal() throws {
        try write("ok.txt", "A readable file about granite.")
        XCTAssertEqual(mkfifo(docs + "/pipe.txt", 0o644), 0)
        let index = try openIndex()
        // In a folder, only regular files are listed; named directly, the FIFO is refused
        // without blocking on it (no writer ever opens it).
        XCTAssertEqual(try index.indexFiles([docs]).indexed, 1)
        let direct = try index.indexFiles([docs + "/pipe.txt"])
        XCTAssertEqual(direct.failed, 1)
        XCTAssertTrue(direct.warnings.first?.contains("not a regular file") ?? false, "\(direct.warnings)")

        try write("locked.txt", "Nobody may read this.")
        XCTAssertEqual(chmod(docs + "/locked.txt", 0), 0)
        guard getuid() != 0 else {
            throw XCTSkip("running as root, which reads mode-000 files: the unreadable case is covered by the FIFO and the vanished file")
        }
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.failed, 1)
        XCTAssertTrue(s.warnings.contains { $0.contains("locked.txt") && $0.contains("unreadable") }, "\(s.warnings)")
    }

    func testFilesVanishingOrChangingDuringTheRun() throws {
        for i in 0 ..< 6 { try write("f\(i).txt", "File \(i) about copper falcons, version one.") }
        let index = try openIndex()
        // After the first file is read, f3 vanishes and f4 changes: the run goes on, f3
        // counts as failed with a warning, f4 is indexed as it is when read.
        var acted = false
        let s = try index.indexFiles([docs]) { p in
            guard !acted, p.filesDone == 1 else { return }
            acted = true
            try? FileManager.default.removeItem(atPath: self.docs + "/f3.txt")
            try? Data("File 4, rewritten while the run was under way.".utf8).write(to: URL(fileURLWithPath: self.docs + "/f4.txt"))
        }
        XCTAssertEqual([s.indexed, s.failed], [5, 1])
        XCTAssertTrue(s.warnings.contains { $0.contains("f3.txt") }, "\(s.warnings)")
        try assertIndexedWhole(index, docs + "/f4.txt", text: "File 4, rewritten while the run was under way.")
        XCTAssertEqual(try index.check().problems, [])
        // The next run sees f3 gone and nothing else to do.
        let again = try index.indexFiles([docs])
        XCTAssertEqual([again.indexed, again.unchanged, again.removed], [0, 5, 0])
    }

    func testHugeFilesAreSkippedBySizeWithoutBeingRead() throws {
        // 500 MB sparse files (no disk used): one over the default limit, one under a raised
        // limit but binary (zeros), which the first 8 KiB show without reading the rest.
        let big = docs + "/big.txt"
        XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: nil))
        XCTAssertEqual(truncate(big, 500 << 20), 0)
        let index = try openIndex()
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.skipped, 1)
        XCTAssertTrue(s.warnings.contains { $0.contains("big.txt") && $0.contains("size limit (524288000 bytes)") }, "\(s.warnings)")
        let start = Date()
        XCTAssertEqual(DocumentReader.readBounded(path: big, maxBytes: 600 << 20).failureReason, .binary)
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, "the binary check read more than the first 8 KiB")
        // A file that is (or grows) over the limit when read is skipped, not read on.
        try write("grown.txt", String(repeating: "x", count: 5000))
        XCTAssertEqual(DocumentReader.readBounded(path: docs + "/grown.txt", maxBytes: 4096).failureReason, .tooLarge(5000))
    }

    func testNamesWithNewlinesAndInvalidUTF8() throws {
        try write("new\nline.txt", "A file whose name holds a newline, about lanterns.")
        let invalid: [UInt8] = Array(docs.utf8) + Array("/bad-".utf8) + [0xFF, 0xFE] + Array(".txt".utf8)
        let fd = invalid.withUnsafeBufferPointer { p -> Int32 in
            let cString = Array(p) + [0]
            return cString.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_CREAT | O_WRONLY, 0o644) }
        }
        XCTAssertGreaterThanOrEqual(fd, 0)
        let body = Array("A file whose name is not UTF-8, about meadows.".utf8)
        XCTAssertEqual(body.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, body.count)
        close(fd)

        let index = try openIndex()
        let s = try index.indexFiles([docs])
        // The newline name indexes like any other; the undecodable one (a String path could
        // not open it again) is skipped and named in a warning, never silently dropped.
        try assertIndexedWhole(index, docs + "/new\nline.txt", text: "A file whose name holds a newline, about lanterns.")
        XCTAssertEqual([s.indexed, s.skipped], [1, 1], "\(s)")
        XCTAssertTrue(s.warnings.contains { $0.contains("/bad-\u{FFFD}\u{FFFD}.txt: skipped, its name is not valid UTF-8") }, "\(s.warnings)")
        XCTAssertEqual(try index.check().problems, [])
        // The JSON output escapes the newline.
        let run = try runM3Search(["query", "lanterns newline", "--index", dir.appendingPathComponent("t.m3index").path,
                                   "--model", fixture("models/tiny-safetensors"), "--json", "--k", "5"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("new\\nline.txt"), run.stdout)
    }

    func testLongLinesAndNULBytesAreIndexedWhole() throws {
        // 200 KB on one line, and a NUL after the first 8 KiB (past the binary check).
        let words = ["harbor", "meadow", "granite", "lantern", "copper", "falcon"]
        let long = (0 ..< 25_000).map { words[$0 % words.count] + "\($0 % 97)" }.joined(separator: " ")
        try write("long.txt", long)
        let withNUL = String(repeating: "plain text ", count: 900) + "before\u{0}after the null byte."
        try write("nul.txt", withNUL)
        let index = try openIndex()
        let start = Date()
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.indexed, 2)
        XCTAssertLessThan(Date().timeIntervalSince(start), 120)
        try assertIndexedWhole(index, docs + "/long.txt", text: long)
        try assertIndexedWhole(index, docs + "/nul.txt", text: withNUL)
        XCTAssertEqual(try index.check().problems, [])
    }

    func testHostileHTMLIsLinearAndKeepsText() throws {
        // 200,000 "<" without ">" and 20,000 tags: each would take quadratic time if every
        // "<" scanned ahead to the end of the page.
        let start = Date()
        XCTAssertEqual(HTMLText.extract("text " + String(repeating: "<", count: 200_000)), "text ")
        let page = (0 ..< 20_000).map { "<p>para \($0)</p>" }.joined()
        let out = HTMLText.extract(page)
        XCTAssertEqual(out.split(separator: "\n").count, 20_000)
        XCTAssertTrue(out.contains("para 19999"))
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }
}

extension Result {
    var failureReason: Failure? { if case .failure(let f) = self { return f } else { return nil } }
}
