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
        let index = try location.open(.existing(readOnly: !location.path.isWritable))
        let report = try index.check()
        print("\(location.index): \(report.documents) documents, \(report.chunks) chunks")
        if report.isSound {
            print("ok")
        } else {
            for p in report.problems { print("problem: \(p)") }
            throw ExitCode(ExitStatus.problemsFound)
        }
    }
}
