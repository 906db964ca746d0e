import Foundation
import M3Index
@testable import M3Search
import M3Store
import XCTest

/// Crash safety: `m3search index` is SIGKILLed at random moments; after every kill the
/// index must open, pass `check`, hold every document a reader saw committed before the
/// kill (complete: chunk texts equal to the file's text at their ranges) and find each of
/// them by its own text; a final run must finish the job.
///
/// CI runs a small campaign (200 files, 3 kills). The recorded one (RELIABILITY.md) is
/// `scripts/reliability/kill-campaign.sh`: M3_KILL_FILES=1000 M3_KILL_ROUNDS=30, with
/// M3_KILL_RESULTS naming a JSON file for the per-kill numbers.
final class KillCampaignTests: XCTestCase {
    struct Round: Codable {
        var round: Int
        var delayMs: Int
        var seenCommitted: Int      // documents a reader saw committed just before the kill
        var afterKill: Int          // documents in the index after the kill
        var lost: Int               // seen committed but missing after the kill
        var checkProblems: [String]
        var unsearchable: Int       // documents not found by their own first chunk's text
        var incomplete: Int         // chunk text differing from the file at its range
        var exitedBeforeKill: Bool  // the run finished before the kill landed
    }

    func testKillDuringIndexingLosesNothingCommitted() throws {
        let env = ProcessInfo.processInfo.environment
        let fileCount = Int(env["M3_KILL_FILES"] ?? "") ?? 200
        let rounds = Int(env["M3_KILL_ROUNDS"] ?? "") ?? 3
        var rng = SplitMix(seed: UInt64(env["M3_KILL_SEED"] ?? "") ?? 20261129)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let docs = dir.appendingPathComponent("docs").path
        let indexPath = dir.appendingPathComponent("killed.m3index").path
        let texts = try Self.writeCorpus(count: fileCount, under: docs, rng: &rng)
        let modelFolder = fixture("models/tiny-safetensors")
        let model = try BGEM3(folder: modelFolder)

        // Startup time (model load, walk, first batch): a one-file run into a scratch index.
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("one").path, withIntermediateDirectories: true)
        try Data("One small file.".utf8).write(to: dir.appendingPathComponent("one/a.txt"))
        let calibrationStart = Date()
        _ = try runM3Search(["index", dir.appendingPathComponent("one").path, "--index", dir.appendingPathComponent("one.m3index").path,
                             "--model", modelFolder, "--max-length", "64", "--overlap", "8"], stdin: "")
        let startup = Date().timeIntervalSince(calibrationStart)

        var results: [Round] = []
        // One kill in six lands during startup, uniformly in [0, startup): model loading,
        // walking the tree, creating the index. The others wait until the run has committed
        // a random share of what is left (so the job lasts all the rounds), then another
        // 0–40 ms, so they land anywhere: mid-encoding, mid-transaction, mid-checkpoint.
        var finishedEarly = 0
        for round in 1 ... rounds {
            let process = Process()
            process.executableURL = m3searchBinary
            process.arguments = ["index", docs, "--index", indexPath, "--model", modelFolder,
                                 "--max-length", "64", "--overlap", "8", "--batch", "\(1 + Int(rng.next() % 8))"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            let before = (try? Self.committedPaths(indexPath))?.count ?? 0
            let share = max(1, (fileCount - before) / (rounds - round + 2))
            let target = before + 1 + Int(rng.next() % UInt64(2 * share))
            let started = Date()
            try process.run()
            if round % 6 == 1 {
                Thread.sleep(forTimeInterval: Double(rng.next() % 10_000) / 10_000 * startup)
            } else {
                // A read that fails (the file being created) says nothing: keep the last count.
                var committed = before
                while process.isRunning, committed < target {
                    if let c = try? Self.committedPaths(indexPath).count { committed = c }
                    usleep(3_000)
                }
                usleep(UInt32(rng.next() % 40_000))
            }
            let delay = Date().timeIntervalSince(started)
            // What a reader sees is committed; read it, then kill at once.
            let seen = (try? Self.committedPaths(indexPath)) ?? []
            let exitedBeforeKill = !process.isRunning
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if exitedBeforeKill { finishedEarly += 1 }

            // Killed before the index's creation committed: nothing to lose, and the index
            // reads as absent (the next run creates it).
            do {
                _ = try IndexStore(path: indexPath, readOnly: true)
            } catch StoreError.missing {
                XCTAssertTrue(seen.isEmpty && before == 0, "round \(round): a committed index reads as missing")
                results.append(Round(round: round, delayMs: Int(delay * 1000), seenCommitted: 0, afterKill: 0, lost: 0,
                                     checkProblems: [], unsearchable: 0, incomplete: 0, exitedBeforeKill: exitedBeforeKill))
                continue
            }
            let index = try SearchIndex(path: indexPath, model: model, options: .existing())
            let report = try index.check()
            let present = Set(try index.store.documents().map(\.path))
            let (unsearchable, incomplete) = try Self.verify(index, texts: texts)
            results.append(Round(round: round, delayMs: Int(delay * 1000), seenCommitted: seen.count, afterKill: present.count,
                                 lost: seen.subtracting(present).count, checkProblems: report.problems,
                                 unsearchable: unsearchable, incomplete: incomplete, exitedBeforeKill: exitedBeforeKill))
            XCTAssertEqual(report.problems, [], "round \(round): check failed")
            XCTAssertTrue(seen.isSubset(of: present), "round \(round): lost \(seen.subtracting(present).count) committed documents")
            XCTAssertEqual(unsearchable, 0, "round \(round)")
            XCTAssertEqual(incomplete, 0, "round \(round)")
        }

        // The last run finishes the job.
        let final = try runM3Search(["index", docs, "--index", indexPath, "--model", modelFolder,
                                     "--max-length", "64", "--overlap", "8"], stdin: "")
        XCTAssertEqual(final.status, 0, final.stderr)
        let index = try SearchIndex(path: indexPath, model: model, options: .existing())
        XCTAssertEqual(try index.check().problems, [])
        XCTAssertEqual(index.documentCount, fileCount)
        let (unsearchable, incomplete) = try Self.verify(index, texts: texts)
        XCTAssertEqual([unsearchable, incomplete], [0, 0])

        if let out = env["M3_KILL_RESULTS"] {
            struct Campaign: Codable {
                var files: Int, rounds: Int, seed: String, startupSeconds: Double, finishedEarly: Int
                var lostTotal: Int, corruptIndexes: Int, finalDocuments: Int, finalUnsearchable: Int
                var kills: [Round]
            }
            let campaign = Campaign(files: fileCount, rounds: rounds, seed: env["M3_KILL_SEED"] ?? "20261129",
                                    startupSeconds: startup, finishedEarly: finishedEarly, lostTotal: results.reduce(0) { $0 + $1.lost },
                                    corruptIndexes: results.filter { !$0.checkProblems.isEmpty }.count,
                                    finalDocuments: index.documentCount, finalUnsearchable: unsearchable, kills: results)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(campaign).write(to: URL(fileURLWithPath: out))
        }
        // Most kills must land while the run is working, or the campaign tests little.
        XCTAssertLessThanOrEqual(finishedEarly, max(1, rounds / 5), "kills came too late: \(finishedEarly) runs finished first")
        let midWork = results.filter { $0.afterKill > 0 && !$0.exitedBeforeKill }.count
        XCTAssertGreaterThanOrEqual(midWork, rounds / 2, "too few kills landed after the first commit")
    }

    /// Paths of the documents committed in the index (nil-safe while it is being created).
    static func committedPaths(_ indexPath: String) throws -> Set<String> {
        guard FileManager.default.fileExists(atPath: indexPath) else { return [] }
        return Set(try IndexStore(path: indexPath, readOnly: true).documents().map(\.path))
    }

    /// Every document in the index: its chunks equal the file's text at their character
    /// ranges and cover it from start to end, and a search for its first chunk's text
    /// returns it first. Returns (unsearchable, incomplete) counts.
    static func verify(_ index: SearchIndex, texts: [String: String]) throws -> (Int, Int) {
        var unsearchable = 0, incomplete = 0
        for doc in try index.store.documents() {
            guard let text = texts[doc.path] else { incomplete += 1; continue }
            let scalars = Array(text.unicodeScalars)
            let chunks = try index.store.chunkIDs(documentID: doc.id).compactMap { try index.store.chunk(id: $0) }
            let whole = !chunks.isEmpty && chunks.first!.charStart == 0 && chunks.last!.charEnd == scalars.count
                && chunks.allSatisfy { c in
                    c.charEnd <= scalars.count && c.charStart <= c.charEnd
                        && String(String.UnicodeScalarView(scalars[c.charStart ..< c.charEnd])) == c.text
                }
            if !whole { incomplete += 1; continue }
            let hits = try index.search(chunks[0].text, options: SearchOptions(k: 3, mode: .dense)).results
            if hits.first?.path != doc.path { unsearchable += 1 }
        }
        return (unsearchable, incomplete)
    }

    /// Small text files with distinct contents; every tenth spans several chunks.
    static func writeCorpus(count: Int, under folder: String, rng: inout SplitMix) throws -> [String: String] {
        let words = ["river", "orchard", "lantern", "granite", "falcon", "harbor", "meadow", "copper", "violet", "thunder",
                     "pepper", "marble", "willow", "canyon", "saffron", "glacier", "ember", "velvet", "summit", "cobalt",
                     "tundra", "sparrow", "quartz", "lagoon", "cedar", "prairie", "beacon", "juniper", "basalt", "monsoon",
                     "indexing", "vector", "graph", "posting", "commit", "journal", "snapshot", "checkpoint", "replica", "shard"]
        var texts: [String: String] = [:]
        for i in 0 ..< count {
            let sub = folder + "/part\(i % 7)"
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            let length = i % 10 == 0 ? 120 : 10 + Int(rng.next() % 15)
            var text = "Document \(i):"
            for _ in 0 ..< length { text += " " + words[Int(rng.next() % UInt64(words.count))] }
            text += ".\n"
            let path = sub + "/doc\(i).txt"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            texts[path] = text
        }
        return texts
    }
}

/// Campaigns are replayed from their seed.
typealias SplitMix = SplitMix64
