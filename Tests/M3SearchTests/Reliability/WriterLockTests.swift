import Foundation
@testable import M3Search
import M3Store
import XCTest

/// One writer per index across processes (the `<index>.lock` writer lock), `--wait`, and
/// readers that open while a writer commits.
final class WriterLockTests: XCTestCase {
    var dir: URL!
    var indexPath: String { dir.appendingPathComponent("shared.m3index").path }
    var docs: String { dir.appendingPathComponent("docs").path }
    let modelFolder = fixture("models/tiny-safetensors")

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-lock-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("docs").path, withIntermediateDirectories: true)
        for i in 0 ..< 40 {
            try Data("File \(i) tells of harbor \(i * 7) and meadow \(i * 13), lantern and granite.\n".utf8)
                .write(to: dir.appendingPathComponent("docs/f\(i).txt"))
        }
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func open() throws -> SearchIndex {
        try SearchIndex(path: indexPath, model: try BGEM3(folder: modelFolder), options: IndexOptions(maxLength: 32, overlap: 4))
    }

    func testSecondWriterGetsLockedErrorNamingThePID() throws {
        let first = try open()
        try first.add([DocumentInput(id: "a", text: "first writer")])
        let holder = try XCTUnwrap(WriterLock.holder(ofIndex: indexPath))
        XCTAssertEqual(holder.pid, getpid())

        // Another SearchIndex (its own lock file descriptor) in this process.
        let second = try open()
        XCTAssertThrowsError(try second.add([DocumentInput(id: "b", text: "second writer")])) { error in
            guard let e = error as? M3SearchError, e.kind == .locked, case StoreError.locked(let path, let h)? = e.underlying else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(path, self.indexPath)
            XCTAssertEqual(h?.pid, getpid())
            XCTAssertTrue("\(error)".contains("is locked by PID \(getpid()) ("), "\(error)")
        }
        XCTAssertEqual(second.documentCount, 1)
        // Searching needs no lock.
        XCTAssertEqual(try second.search("first writer", options: SearchOptions(k: 1)).results.first?.path, "a")

        // Another process: a clear error naming this process, and nothing written.
        let run = try runM3Search(["index", docs, "--index", indexPath, "--model", modelFolder], stdin: "")
        XCTAssertEqual(run.status, 75)  // temporary failure: retry
        XCTAssertTrue(run.stderr.contains("index \(indexPath) is locked by PID \(getpid()) ("), run.stderr)
        XCTAssertTrue(run.stderr.contains("started 20"), run.stderr)
        XCTAssertTrue(run.stderr.contains("--wait"), run.stderr)
        XCTAssertEqual(try IndexStore(path: indexPath, readOnly: true).counts().documents, 1)
    }

    func testWaitingWriterProceedsWhenTheLockIsReleasedAndTheFirstWriterReloads() throws {
        let first = try open()
        try first.add([DocumentInput(id: "a", text: "first writer")])

        let process = Process()
        process.executableURL = m3searchBinary
        process.arguments = ["index", docs, "--index", indexPath, "--model", modelFolder, "--wait"]
        let err = dir.appendingPathComponent("stderr.txt")
        XCTAssertTrue(FileManager.default.createFile(atPath: err.path, contents: nil))
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // It waits (and says for whom) as long as the lock is held.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !((try? String(contentsOf: err, encoding: .utf8)) ?? "").contains("waiting") { usleep(50_000) }
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(process.isRunning, "the second writer did not wait")
        XCTAssertTrue(try String(contentsOf: err, encoding: .utf8).contains("being written by PID \(getpid())"))
        XCTAssertEqual(try IndexStore(path: indexPath, readOnly: true).counts().documents, 1)

        first.releaseWriteLock()
        process.waitUntilExit()
        let log = try String(contentsOf: err, encoding: .utf8)
        XCTAssertEqual(process.terminationStatus, 0, log)
        XCTAssertEqual(try IndexStore(path: indexPath, readOnly: true).counts().documents, 41)

        // The first writer's graph and postings predate the other process's commits: taking
        // the lock again reloads them, so its next commit keeps the index sound and whole.
        try first.add([DocumentInput(id: "b", text: "first writer again")])
        XCTAssertEqual(first.documentCount, 42)
        XCTAssertEqual(try first.check().problems, [])
        let fresh = try open()
        XCTAssertEqual(fresh.documentCount, 42)
        XCTAssertEqual(fresh.chunkCount, first.chunkCount)
        XCTAssertEqual(try fresh.check().problems, [])
    }

    func testImportTakesTheLockToo() throws {
        let first = try open()
        try first.add([DocumentInput(id: "a", text: "first writer")])
        let exported = dir.appendingPathComponent("a.jsonl").path
        let export = try runM3Search(["export", "--format", "jsonl", "--index", indexPath, "--out", exported], stdin: "")
        XCTAssertEqual(export.status, 0, export.stderr)
        let run = try runM3Search(["import", exported, "--index", indexPath, "--model", modelFolder], stdin: "")
        XCTAssertEqual(run.status, 75)  // temporary failure: retry
        XCTAssertTrue(run.stderr.contains("is locked by PID \(getpid()) ("), run.stderr)
    }

    func testStaleLockFileOfADeadProcessDoesNotBlock() throws {
        // A lock file left by a killed writer: its flock died with it.
        try Data("pid 999999\ncommand m3search index\nstarted 2020-01-01T00:00:00Z\n".utf8)
            .write(to: URL(fileURLWithPath: WriterLock.lockPath(forIndex: indexPath)))
        let run = try runM3Search(["index", docs, "--index", indexPath, "--model", modelFolder], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(try IndexStore(path: indexPath, readOnly: true).counts().documents, 40)
    }

    /// Readers opened while another process commits batch after batch each see one
    /// committed state: their graph, postings and chunks agree (`check` is clean) and the
    /// document count never goes back.
    func testReadersOpenedDuringWritesSeeConsistentSnapshots() throws {
        let model = try BGEM3(folder: modelFolder)
        _ = try open()  // create the index, then let the other process write it
        let process = Process()
        process.executableURL = m3searchBinary
        process.arguments = ["index", docs, "--index", indexPath, "--model", modelFolder, "--batch", "1"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var counts: [Int] = []
        while process.isRunning || counts.isEmpty {
            let reader = try SearchIndex(path: indexPath, model: model, options: .existing(readOnly: true))
            XCTAssertEqual(try reader.check().problems, [])
            if reader.documentCount > 0 {
                let hits = try reader.search("harbor meadow lantern", options: SearchOptions(k: 3))
                XCTAssertFalse(hits.results.isEmpty)
            }
            counts.append(reader.documentCount)
        }
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(counts, counts.sorted(), "a reader saw the index go back")
        XCTAssertGreaterThan(Set(counts).count, 2, "readers did not overlap the writes: \(counts)")
    }
}
