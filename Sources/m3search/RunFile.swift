import ArgumentParser
import Foundation
import M3Search

// Batch queries in, TREC run files out: what `query --queries` and `eval --run-out` share.

/// `--run-out` and `--run-tag`: a TREC run file of document-level rankings.
struct RunFileOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Write a TREC run (qid Q0 docid rank score tag per line, one line per document) to this file; - for stdout.",
        valueName: "file"), completion: .file())
    var runOut: String?

    @Option(name: .long, help: ArgumentHelp("The run's tag (its last column).", valueName: "tag"))
    var runTag: String = "m3search"

    func check() throws {
        if runTag.isEmpty || runTag.contains(where: \.isWhitespace) {
            throw ValidationError("--run-tag must be one word (a run file's columns are separated by whitespace)")
        }
    }
}

/// One query of a batch: its id and text.
struct BatchQuery: Equatable {
    var id: String
    var text: String
}

/// Reads `--queries FILE` (`-`: stdin). A file whose first non-blank line starts with `{`
/// is JSON Lines, `{"_id": "…", "text": "…"}` per line (BEIR's queries.jsonl; `_id` a
/// string or an integer, other fields ignored); otherwise each non-blank line is a query,
/// its id the line number. Throws `M3SearchError` naming the file and line of the first
/// problem (`.notFound` for a missing file, `.invalidInput` for a bad line, a duplicate
/// id or no query at all).
func readBatchQueries(_ file: String) throws -> [BatchQuery] {
    let name = file == "-" ? "stdin" : file
    let data: Data
    if file == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
    } else {
        guard let contents = FileManager.default.contents(atPath: file) else {
            throw M3SearchError(.notFound, "cannot read the queries file \(file): check the path and its permissions")
        }
        data = contents
    }
    let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated().map { i, line in
        (number: i + 1, text: String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self))
    }.filter { !$0.text.allSatisfy(\.isWhitespace) }
    let isJSON = lines.first?.text.drop(while: \.isWhitespace).first == "{"
    var queries: [BatchQuery] = [], seen = Set<String>()
    for (number, text) in lines {
        let query: BatchQuery
        if isJSON {
            func bad(_ detail: String) -> M3SearchError { M3SearchError(.invalidInput, "\(name):\(number): \(detail)") }
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw bad("not a JSON object; expected {\"_id\": \"…\", \"text\": \"…\"} (or give one plain-text query per line)")
            }
            let id: String
            switch object["_id"] {
            case let s as String where !s.isEmpty: id = s
            case let n as NSNumber where !(n is Bool) && n.doubleValue == n.doubleValue.rounded(): id = n.stringValue
            default: throw bad("\"_id\" must be a non-empty string or an integer")
            }
            guard let q = object["text"] as? String, !q.allSatisfy(\.isWhitespace) else {
                throw bad("query \(id) has no \"text\" (a non-empty string)")
            }
            guard seen.insert(id).inserted else { throw bad("query id \(id) appears twice") }
            query = BatchQuery(id: id, text: q)
        } else {
            query = BatchQuery(id: String(number), text: text)
        }
        queries.append(query)
    }
    if queries.isEmpty { throw M3SearchError(.invalidInput, "\(name) holds no queries") }
    return queries
}

/// Writes document rankings as a TREC run: `qid Q0 docid rank score tag`, queries in the
/// given order, documents best first with ranks from 1, scores as Swift's shortest
/// round-trip decimal of the fused Float. Equal scores keep the ranking's order (by chunk
/// id, as search and eval break ties). A file is written whole or not at all (a temporary
/// file renamed over it). Throws `M3SearchError.invalidInput` when an id holds whitespace,
/// which a run file cannot carry, and `.io` when the file cannot be written.
func writeTRECRun(_ runs: [(query: String, ranking: [(id: String, score: Float)])], tag: String, to path: String) throws {
    var text = ""
    for (query, ranking) in runs {
        if query.contains(where: \.isWhitespace) {
            throw M3SearchError(.invalidInput, "query id \"\(query)\" holds whitespace, which a TREC run cannot carry; nothing was written")
        }
        for (i, doc) in ranking.enumerated() {
            if doc.id.isEmpty || doc.id.contains(where: \.isWhitespace) {
                throw M3SearchError(.invalidInput, "document id \"\(doc.id)\" holds whitespace, which a TREC run cannot carry; nothing was written")
            }
            text += "\(query) Q0 \(doc.id) \(i + 1) \(doc.score.description) \(tag)\n"
        }
    }
    if path == "-" {
        FileHandle.standardOutput.write(Data(text.utf8))
        return
    }
    let url = URL(fileURLWithPath: path)
    do {
        try Data(text.utf8).write(to: url, options: .atomic)
    } catch {
        throw M3SearchError(.io, "cannot write the run file \(path): \(error.localizedDescription)")
    }
}
