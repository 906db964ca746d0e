import Foundation
@testable import M3Search
import XCTest

/// FileWalker against independent references on generated trees: `git ls-files --others
/// --exclude-standard` (git's own reading of .gitignore and .git/info/exclude) and ripgrep's
/// `rg --files` (which adds .ignore). A reference whose tool is absent is skipped.
final class FileWalkerTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-walker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ relative: String, _ text: String = "x\n") throws {
        let url = dir.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    static func tool(_ name: String) -> String? {
        ["/usr/bin/", "/usr/local/bin/", "/bin/"].map { $0 + name }.first(where: FileManager.default.isExecutableFile)
    }

    /// The tool's output lines, run in the tree's folder.
    func run(_ tool: String, _ arguments: [String]) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.currentDirectoryURL = dir
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// A tree exercising nested files, negation, folder-only and anchored patterns, `**`,
    /// escapes, and a pattern in .git/info/exclude. Seeded: several shapes per run.
    func makeTree(seed: UInt64) throws {
        var rng = seed
        func next(_ n: Int) -> Int { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return Int((rng >> 33) % UInt64(n)) }
        let names = ["a.txt", "b.md", "c.log", "build", "tmp", "keep.log", "x.py", "#hash.txt", "notes"]
        let folders = ["", "src/", "src/build/", "docs/", "docs/tmp/", "lib/deep/er/", "build/", "notes/"]
        for folder in folders {
            for name in names where next(3) > 0 { try write(folder + name + (name.contains(".") ? "" : ".txt")) }
        }
        try write(".gitignore", "*.log\n!keep.log\n/build/\ntmp/\nlib/**/er\n\\#hash.txt\n# a comment\n\nnotes.txt  \n")
        try write("src/.gitignore", "build\n!x.py\n*.py\n" + (next(2) == 0 ? "!x.py\n" : ""))
        try write("docs/.gitignore", "/a.txt\n" + (next(2) == 0 ? "b.md\n" : ""))
        try write("lib/.gitignore", next(2) == 0 ? "deep/\n" : "**/a.txt\n")
        _ = try run(Self.tool("git")!, ["init", "-q"])
        try write(".git/info/exclude", "docs/tmp/b.md\n")
    }

    func testMatchesGitOnGeneratedTrees() throws {
        guard let git = Self.tool("git") else { throw XCTSkip("git is not installed") }
        for seed in 1 ... 6 as ClosedRange<UInt64> {
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try makeTree(seed: seed)
            // git lists hidden files too (.gitignore); FileWalker never returns hidden ones.
            let reference = try run(git, ["ls-files", "--others", "--exclude-standard"])
                .filter { !$0.split(separator: "/").contains { $0.hasPrefix(".") } }.sorted()
            let walked = FileWalker().walk(dir.path).files
            XCTAssertEqual(walked, reference, "seed \(seed)")
            XCTAssertGreaterThan(walked.count, 5)
        }
    }

    func testMatchesRipgrepWithDotIgnore() throws {
        guard let rg = Self.tool("rg") else { throw XCTSkip("ripgrep (rg) is not installed") }
        guard Self.tool("git") != nil else { throw XCTSkip("git is not installed") }
        try makeTree(seed: 7)
        // .ignore overrides .gitignore in the same folder, and applies outside git too.
        try write(".ignore", "!c.log\nb.md\n")
        try write("src/.ignore", "a.txt\n")
        let reference = try run(rg, ["--files", "--sort", "path"]).sorted()
        XCTAssertEqual(FileWalker().walk(dir.path).files, reference)
    }

    func testNoIgnoreAndGlobSemantics() throws {
        try write("a/__pycache__/x.txt")
        try write("a/b/__pycache__/y.txt")
        try write("a/keep.md")
        try write("top.md")
        try write(".ignore", "*.md\n")
        XCTAssertEqual(FileWalker().walk(dir.path).files, ["a/__pycache__/x.txt", "a/b/__pycache__/y.txt"])
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false).walk(dir.path).files.count, 4)
        // A glob without "/" matches a name at any depth; a folder match prunes its contents.
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false, exclude: ["__pycache__"]).walk(dir.path).files, ["a/keep.md", "top.md"])
        // "X/**" is anchored: only a/…; "**/X/**" anywhere.
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false, include: ["a/**"]).walk(dir.path).files.count, 3)
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false, include: ["**/__pycache__/**"]).walk(dir.path).files,
                       ["a/__pycache__/x.txt", "a/b/__pycache__/y.txt"])
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false, include: ["*.md"]).walk(dir.path).files, ["a/keep.md", "top.md"])
        XCTAssertEqual(FileWalker(respectIgnoreFiles: false, include: ["/*.md"]).walk(dir.path).files, ["top.md"])
    }

    /// Rules of a repository folder above the indexed one still apply below it.
    func testParentIgnoreFilesApply() throws {
        guard let git = Self.tool("git") else { throw XCTSkip("git is not installed") }
        try write("sub/one.txt")
        try write("sub/gen/two.txt")
        try write("sub/three.log")
        try write(".gitignore", "*.log\nsub/gen/\n")
        _ = try run(git, ["init", "-q"])
        XCTAssertEqual(FileWalker().walk(dir.path + "/sub").files, ["one.txt"])
    }
}
