import Foundation

extension Ingestion {
    /// Indexes the documents of JSONL files, one JSON object per line: a BEIR corpus.jsonl
    /// (`{"_id", "title", "text", "metadata"}`) or `{"id", "title", "text", "metadata"}`.
    /// The document id is the given id. The encoded text is `title + " " + text`, trimmed,
    /// as BEIR's and FlagEmbedding's BEIR evaluations join them. `metadata` values that are
    /// not strings are kept as their JSON text.
    ///
    /// Incremental: a document whose id, title, text and metadata are unchanged is not
    /// encoded again, so re-indexing an unchanged file encodes nothing. Documents are never
    /// removed (a JSONL file need not hold the whole index). An invalid line is reported by
    /// file and line number and counted as skipped; the run continues.
    func indexJSONL(_ files: [String], batchDocuments: Int, progress: ((IndexProgress) -> Void)?) throws -> IndexSummary {
        let start = Date()
        try writer.lockForWriting(wait: false, onWait: nil)
        var summary = IndexSummary()
        let known = Dictionary(try writer.storedDocuments().map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var batch: [PreparedDocument] = []
        var seen = Set<String>()
        var done = 0
        func flush() throws {
            guard !batch.isEmpty else { return }
            try writer.add(batch)
            batch.removeAll()
        }
        for file in files {
            guard FileManager.default.fileExists(atPath: file) else { throw M3SearchError(.notFound, "\(file) does not exist") }
            let mtime = ((try? FileManager.default.attributesOfItem(atPath: file))?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            try JSONLLines.forEach(file) { number, line in
                defer {
                    done += 1
                    progress?(IndexProgress(filesDone: done, filesTotal: 0, chunks: summary.chunks, tokens: summary.tokens,
                                            elapsed: Date().timeIntervalSince(start)))
                }
                let record: JSONLRecord
                switch line.map(JSONLRecord.parse) ?? .failure(.init(why: "longer than \(JSONLLines.maxLine) bytes")) {
                case .success(nil): return  // blank line
                case .success(let r?): record = r
                case .failure(let problem):
                    summary.skipped += 1
                    summary.skippedByReason["invalid JSONL line", default: 0] += 1
                    summary.warnings.append("\(file):\(number): skipped, \(problem.why)")
                    return
                }
                guard seen.insert(record.id).inserted else {
                    summary.skipped += 1
                    summary.skippedByReason["duplicate JSONL id", default: 0] += 1
                    summary.warnings.append("\(file):\(number): skipped, id \"\(record.id)\" appeared on an earlier line")
                    return
                }
                let hash = record.contentHash
                if let old = known[record.id], old.contentHash == hash {
                    summary.unchanged += 1
                    return
                }
                let prepared = try prepare(path: record.id, text: record.text, size: Int64(record.text.utf8.count), mtime: mtime,
                                           contentHash: hash, metadata: record.metadataJSON)
                summary.indexed += 1
                summary.chunks += prepared.chunks.count
                summary.tokens += prepared.chunks.reduce(0) { $0 + $1.tokenIDs.count }
                batch.append(prepared)
                if batch.count >= batchDocuments { try flush() }
            }
        }
        try flush()
        try? writer.checkpoint()
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}

/// One document line of a JSONL corpus.
struct JSONLRecord: Equatable {
    struct Problem: Error, Equatable { var why: String }

    var id: String
    /// title + " " + text, trimmed.
    var text: String
    var metadata: [String: String]?

    var metadataJSON: String? {
        metadata.flatMap { try? JSONEncoder.sorted.encode($0) }.map { String(decoding: $0, as: UTF8.self) }
    }

    /// What decides "unchanged": the text and the metadata.
    var contentHash: String {
        DocumentReader.contentHash(Data((text + "\u{0}" + (metadataJSON ?? "")).utf8))
    }

    /// nil for a blank line; a Problem naming what is wrong.
    static func parse(_ line: Data) -> Result<JSONLRecord?, Problem> {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return .success(nil) }
        guard let object = try? JSONSerialization.jsonObject(with: line, options: [.fragmentsAllowed]) else {
            return .failure(Problem(why: "not valid JSON"))
        }
        guard let o = object as? [String: Any] else { return .failure(Problem(why: "not a JSON object")) }
        let idValue = o["_id"] ?? o["id"]
        let id: String
        switch idValue {
        case let s as String: id = s
        case let n as NSNumber: id = n.stringValue
        case nil: return .failure(Problem(why: "no \"_id\" or \"id\""))
        default: return .failure(Problem(why: "the id must be a string or a number"))
        }
        guard !id.isEmpty else { return .failure(Problem(why: "the id is empty")) }
        guard let body = o["text"] as? String else { return .failure(Problem(why: "\"text\" must be a string")) }
        var title = ""
        if let t = o["title"], !(t is NSNull) {
            guard let s = t as? String else { return .failure(Problem(why: "\"title\" must be a string")) }
            title = s
        }
        let text = (title + " " + body).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return .failure(Problem(why: "title and text are empty")) }
        var metadata: [String: String]?
        if let m = o["metadata"], !(m is NSNull) {
            guard let fields = m as? [String: Any] else { return .failure(Problem(why: "\"metadata\" must be an object")) }
            var out: [String: String] = [:]
            for (k, v) in fields {
                if let s = v as? String { out[k] = s; continue }
                guard let d = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]) else { continue }
                out[k] = String(decoding: d, as: UTF8.self)
            }
            metadata = out.isEmpty ? nil : out
        }
        return .success(JSONLRecord(id: id, text: text, metadata: metadata))
    }
}

/// Reads a file line by line, 64 KiB at a time: memory is one line (at most `maxLine`).
enum JSONLLines {
    static let maxLine = 64 << 20

    /// Calls `body` with each line's number (1-based) and bytes; nil for a line longer than
    /// `maxLine` (its bytes are skipped up to the next newline).
    static func forEach(_ path: String, _ body: (Int, Data?) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw M3SearchError(.notFound, "\(path) cannot be opened") }
        defer { try? handle.close() }
        var pending = Data(), number = 0, overlong = false
        while true {
            let chunk = handle.readData(ofLength: 1 << 16)
            if chunk.isEmpty { break }
            var from = chunk.startIndex
            while let newline = chunk[from...].firstIndex(of: 0x0A) {
                number += 1
                if overlong { try body(number, nil) } else { pending.append(chunk[from ..< newline]); try body(number, pending) }
                pending.removeAll(keepingCapacity: true)
                overlong = false
                from = newline + 1
            }
            if !overlong {
                pending.append(chunk[from...])
                if pending.count > maxLine { overlong = true; pending.removeAll() }
            }
        }
        if overlong || !pending.isEmpty { number += 1; try body(number, overlong ? nil : pending) }
    }
}
