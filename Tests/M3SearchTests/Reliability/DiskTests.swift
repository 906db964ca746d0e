import Foundation
@testable import M3Search
import M3Store
import XCTest

/// A full filesystem (a 2 MB tmpfs) and a read-only one (a read-only bind mount: root
/// ignores file modes, not a read-only mount). CI runs as root; elsewhere these skip.
final class DiskTests: XCTestCase {
    var dir: URL!
    var mounts: [String] = []
    let modelFolder = fixture("models/tiny-safetensors")

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-disk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for m in mounts.reversed() { _ = Self.run("/bin/umount", [m]) }
        try? FileManager.default.removeItem(at: dir)
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func mount(_ arguments: [String], at point: String) throws {
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        guard Self.run("/bin/mount", arguments + [point]) == 0 else {
            throw XCTSkip("cannot mount (\(arguments.joined(separator: " "))): needs root with CAP_SYS_ADMIN, as in CI")
        }
        mounts.append(point)
    }

    func documents(_ range: Range<Int>) -> [DocumentInput] {
        range.map { DocumentInput(id: "doc\($0)", text: "Document \($0) about harbor \($0 * 3), meadow and granite lanterns.") }
    }

    func testFullDiskFailsClearlyAndKeepsTheLastCommittedState() throws {
        let fs = dir.appendingPathComponent("small").path
        try mount(["-t", "tmpfs", "-o", "size=2m", "tmpfs"], at: fs)
        let path = fs + "/full.m3index"
        let model = try BGEM3(folder: modelFolder)
        let index = try SearchIndex(path: path, model: model, options: IndexOptions(maxLength: 32, overlap: 4))
        // Leave about 160 KB free, then add batches until the disk is full.
        var stats = statvfs()
        XCTAssertEqual(statvfs(fs, &stats), 0)
        let free = Int(stats.f_bavail) * Int(stats.f_frsize)
        try Data(count: max(0, free - 160_000)).write(to: URL(fileURLWithPath: fs + "/filler"))
        var committed = 0
        var failure: Error?
        for batch in 0 ..< 400 {
            do {
                try index.add(documents(batch * 10 ..< batch * 10 + 10))
                committed = batch * 10 + 10
            } catch { failure = error; break }
        }
        let error = try XCTUnwrap(failure, "the disk never filled")
        guard let e = error as? M3SearchError, e.kind == .diskFull, case StoreError.diskFull? = e.underlying else {
            return XCTFail("not a disk-full error: \(error)")
        }
        XCTAssertTrue("\(error)".contains("is full: free some space"), "\(error)")
        XCTAssertGreaterThan(committed, 0)

        // The failed batch left nothing behind, in memory or in the file.
        XCTAssertEqual(index.documentCount, committed)
        XCTAssertEqual(try index.check().problems, [])
        let reader = try SearchIndex(path: path, model: model, options: .existing(readOnly: true))
        XCTAssertEqual(reader.documentCount, committed)
        XCTAssertEqual(try reader.check().problems, [])
        XCTAssertEqual(try reader.search(documents(0 ..< 1)[0].text, options: SearchOptions(k: 1, mode: .dense)).results.first?.path, "doc0")

        // The command line says so too, and exits non-zero (this writer lets it write).
        index.releaseWriteLock()
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        for i in 0 ..< 300 { try Data("Note \(i) on copper falcons and violet summits, number \(i * 11).".utf8).write(to: docs.appendingPathComponent("n\(i).txt")) }
        let run = try runM3Search(["index", docs.path, "--index", path, "--model", modelFolder], stdin: "")
        XCTAssertEqual(run.status, 74)  // I/O error
        XCTAssertTrue(run.stderr.contains("is full: free some space"), run.stderr)
        XCTAssertEqual(try SearchIndex(path: path, model: model, options: .existing(readOnly: true)).check().problems, [])

        // With space again, the same writer carries on (reloading what the other process committed).
        try FileManager.default.removeItem(atPath: fs + "/filler")
        try index.add(documents(5000 ..< 5010))
        XCTAssertEqual(try index.check().problems, [])
    }

    func testIndexOnReadOnlyMountCanBeSearched() throws {
        let source = dir.appendingPathComponent("src").path
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let model = try BGEM3(folder: modelFolder)
        do {
            let index = try SearchIndex(path: source + "/ro.m3index", model: model, options: IndexOptions(maxLength: 32, overlap: 4))
            try index.add(documents(0 ..< 20))
        }  // closed: SQLite removes its -wal and -shm files
        let ro = dir.appendingPathComponent("ro").path
        try mount(["--bind", source], at: ro)
        guard Self.run("/bin/mount", ["-o", "remount,ro,bind", ro]) == 0 else { throw XCTSkip("cannot remount read-only") }
        XCTAssertFalse(FileManager.default.createFile(atPath: ro + "/probe", contents: Data()), "the mount is writable")

        let index = try SearchIndex(path: ro + "/ro.m3index", model: model, options: .existing(readOnly: true))
        XCTAssertEqual(index.documentCount, 20)
        XCTAssertEqual(try index.check().problems, [])
        XCTAssertEqual(try index.search(documents(3 ..< 4)[0].text, options: SearchOptions(k: 1, mode: .dense)).results.first?.path, "doc3")
        // The command line picks read-only by itself.
        let q = try runM3Search(["query", "harbor meadow", "--index", ro + "/ro.m3index", "--model", modelFolder, "--json"], stdin: "")
        XCTAssertEqual(q.status, 0, q.stderr)
        XCTAssertTrue(q.stdout.contains("\"path\":\"doc"), q.stdout)
        let c = try runM3Search(["check", "--index", ro + "/ro.m3index", "--model", modelFolder], stdin: "")
        XCTAssertEqual(c.status, 0, c.stderr)
        // Writing is refused with a clear message.
        let w = try runM3Search(["index", source, "--index", ro + "/ro.m3index", "--model", modelFolder], stdin: "")
        XCTAssertEqual(w.status, 77)  // permission
        XCTAssertTrue(w.stderr.contains("read-only") || w.stderr.contains("writer lock"), w.stderr)
    }
}
