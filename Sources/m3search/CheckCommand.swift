import ArgumentParser
import Foundation
import M3Search

/// `m3search check`: verify an index file.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify an index: SQLite integrity, HNSW invariants, postings and ColBERT rows against the chunks.")

    @OptionGroup var location: IndexLocation

    @Flag(name: .long, help: "Remove schema objects m3search did not create (triggers, views, extra indexes or tables) before checking.")
    var repair = false

    func run() throws {
        // The schema first, without opening the index (a normal open refuses a foreign
        // schema object): report it, or with --repair remove it and check the rest.
        let schema = try SearchIndex.inspectSchema(at: location.index)
        if !schema.foreign.isEmpty && repair {
            for object in try SearchIndex.removeForeignSchemaObjects(at: location.index) { print("removed: \(object)") }
        } else if !schema.isSound {
            print("\(location.index): schema differs from the one m3search creates")
            for object in schema.foreign { print("problem: \(object) was not created by m3search (`check --repair` removes it)") }
            for damage in schema.damaged { print("problem: \(damage)") }
            throw ExitCode(ExitStatus.problemsFound)
        }
        if !schema.damaged.isEmpty {
            for damage in schema.damaged { print("problem: \(damage)") }
            throw ExitCode(ExitStatus.problemsFound)
        }
        // Damage found while opening (a row failing its checksum as the graph loads, a lost
        // meta row) is a finding of `check` too, not a failure to run it.
        let index: SearchIndex
        do {
            index = try location.open(.existing(readOnly: !location.path.isWritable))
        } catch let error as M3SearchError where error.kind == .corrupt {
            print("\(location.index): damaged")
            print("problem: \(error.message)")
            throw ExitCode(ExitStatus.problemsFound)
        }
        let report = try index.check()
        print("\(location.index): \(report.documents) documents, \(report.chunks) chunks")
        for note in report.notes { print("note: \(note)") }
        if report.isSound {
            print("ok")
        } else {
            for p in report.problems { print("problem: \(p)") }
            throw ExitCode(ExitStatus.problemsFound)
        }
    }
}
