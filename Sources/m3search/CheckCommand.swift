import ArgumentParser
import Foundation
import M3Search

/// `m3search check`: verify an index file.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify an index: SQLite integrity, HNSW invariants, postings and ColBERT rows against the chunks.")

    @OptionGroup var location: IndexLocation

    func run() throws {
        let report: IntegrityReport
        do {
            let m = try BGEM3(folder: BGEM3.locate(explicit: location.model))
            let index = try SearchIndex(path: location.index, model: m, create: false,
                                        readOnly: !FileManager.default.isWritableFile(atPath: location.index))
            report = try index.check()
        } catch { fail("\(error)") }
        print("\(location.index): \(report.documents) documents, \(report.chunks) chunks")
        if report.isSound {
            print("ok")
        } else {
            for p in report.problems { print("problem: \(p)") }
            throw ExitCode(3)
        }
    }
}
