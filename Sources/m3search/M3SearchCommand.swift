import ArgumentParser
import Foundation
import M3Model
import M3Search

@main
struct M3SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m3search",
        abstract: "Hybrid search with BGE-M3: dense, sparse and ColBERT, natively in Swift.",
        discussion: "Exit codes: 0 success, 3 `check` found problems, 64 usage, 65 bad data (damaged or foreign index, "
            + "malformed input file, damaged model files), 66 not found (no index, model, model file or input file; empty index), 70 internal "
            + "error, 74 I/O error or full disk, 75 index locked by another writer (retry), 77 permission (read-only).",
        version: m3searchVersion,
        subcommands: [IndexCommand.self, QueryCommand.self, ServeCommand.self, CheckCommand.self, InfoCommand.self,
                      EncodeCommand.self, ScoreCommand.self, EvalCommand.self, TuneCommand.self, ExportCommand.self,
                      ImportCommand.self])

    /// Parses, runs the subcommand, and maps whatever it throws to one message and exit code
    /// (`ExitStatus`): every `run()` throws instead of exiting.
    static func main() async {
        let command: ParsableCommand
        do { command = try parseAsRoot() } catch { ExitStatus.exit(with: error, command: self) }
        // Commands that encode documents spend their time in OpenBLAS's sgemm: when it fell
        // back to generic kernels on this CPU, restart once with the right ones (a query's
        // short texts take m3search's own kernels and skip the restart's cost).
        if command is IndexCommand || command is ServeCommand || command is EncodeCommand || command is EvalCommand
            || command is ScoreCommand || command is TuneCommand {
            BLASKernels.restartWithBetterCoreIfNeeded()
        }
        // A one-shot query would share a core with OpenBLAS's idle workers spinning.
        if command is QueryCommand { BLASKernels.stopWorkerThreads() }
        do {
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                var command = command
                try command.run()
            }
        } catch {
            ExitStatus.exit(with: error, command: self)
        }
    }
}

/// Reads stdin as JSON Lines, skipping blank lines, and decodes each line.
/// Throws `M3SearchError.invalidInput` naming the first line that does not decode.
func readJSONLines<T: Decodable>(_ type: T.Type, what: String) throws -> [T] {
    let data = FileHandle.standardInput.readDataToEndOfFile()
    let decoder = JSONDecoder()
    var items: [T] = []
    var lineNumber = 0
    for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        lineNumber += 1
        if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
        do {
            items.append(try decoder.decode(T.self, from: Data(line)))
        } catch {
            throw M3SearchError(.invalidInput, "stdin line \(lineNumber) is not a JSON object \(what)")
        }
    }
    return items
}
