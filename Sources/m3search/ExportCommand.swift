import ArgumentParser
import Foundation
import M3Search

/// `m3search export`: every chunk with its vectors as JSON Lines (for `m3search import`), or
/// the files Qdrant, Milvus or Vespa load (`EngineExport`).
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every chunk with its dense, sparse and ColBERT vectors: as JSON Lines, or as the files Qdrant, Milvus or Vespa load.",
        discussion: """
        The first line is a header with the index settings; then one line per chunk: \
        {"id", "doc_id", "chunk", "char_start", "char_end", "token_count", "text", "metadata", ["chunk_metadata",] "source", \
        "dense", "sparse", "colbert"}. Streams (one chunk in memory at a time) and needs no model. \
        --format qdrant|milvus|vespa --out DIR writes the files each engine loads (docs/engines.md).
        """)

    /// The header's "format" value and version; `m3search import` accepts this version only.
    static let formatName = "m3search-export"
    static let formatVersion = 1

    enum Format: String, ExpressibleByArgument, CaseIterable { case jsonl, qdrant, milvus, vespa }

    @Option(name: .long, help: ArgumentHelp(
        "Output format: jsonl (m3search's own, for import), or qdrant, milvus, vespa (a folder of what each engine loads).",
        discussion: "docs/engines.md describes the engine folders and the queries that reproduce m3search's ranking."))
    var format: Format = .jsonl

    @OptionGroup var location: IndexPathOption

    @Option(name: .long, help: ArgumentHelp(
        "Output file for jsonl (default, or `-`: stdout; a FIFO is written through; symbolic links and devices are refused); for an engine format, the folder to create (required).",
        discussion: "An engine export is written next to it and renamed into place when complete: the folder must be new or empty.",
        valueName: "path"), completion: .file())
    var out: String?

    @Flag(name: .long, help: "Engine formats: replace a folder holding an earlier m3search export.")
    var force = false

    func validate() throws {
        if format == .jsonl && force { throw ValidationError("--force applies to --format qdrant, milvus and vespa") }
        if format != .jsonl && out == nil {
            throw ValidationError("--format \(format.rawValue) writes a folder: give it with --out DIR")
        }
    }

    func run() throws {
        if let engine = EngineExport.Engine(rawValue: format.rawValue), let out {
            let summary = try EngineExport.write(engine, indexAt: location.index, to: out, replacing: force)
            for note in summary.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
            FileHandle.standardError.write(Data(
                "exported \(summary.chunks) chunks for \(format.rawValue) to \(out) (\(summary.files.count) files)\n".utf8))
            return
        }
        // Every write, the fsync and the close are checked; on any error the output
        // object removes its partial file (ExportOutput).
        let output = try ExportOutput(path: out)
        var w = JSONWriter()
        var written = 0
        try SearchIndex.export(indexAt: location.index, header: { snapshot in
            w.raw("{\"format\":"); w.string(Self.formatName)
            w.raw(",\"version\":\(Self.formatVersion),\"settings\":")
            w.raw(String(decoding: try JSONEncoder.sorted.encode(snapshot.settings), as: UTF8.self))
            w.raw(",\"default_weights\":")
            if let dw = snapshot.defaultWeights {
                w.raw("{\"dense\":"); w.number(dw.dense); w.raw(",\"sparse\":"); w.number(dw.sparse)
                w.raw(",\"colbert\":"); w.number(dw.colbert); w.raw("}")
            } else {
                w.raw("null")
            }
            w.raw(",\"documents\":\(snapshot.documents),\"chunks\":\(snapshot.chunks)}\n")
            try w.flush(into: output.put)
        }, chunk: { c in
            Self.write(c, to: &w)
            try w.flush(into: output.put)
            written += 1
        })
        try output.finish()
        if let out, out != "-" {
            FileHandle.standardError.write(Data("exported \(written) chunks to \(out)\n".utf8))
        }
    }

    /// One chunk line; see docs/engines.md for the fields.
    static func write(_ c: ExportedChunk, to w: inout JSONWriter) {
        w.raw("{\"id\":"); w.string("\(c.documentID)#\(c.ordinal)")
        w.raw(",\"doc_id\":"); w.string(c.documentID)
        w.raw(",\"chunk\":\(c.ordinal),\"char_start\":\(c.charRange.lowerBound),\"char_end\":\(c.charRange.upperBound)")
        w.raw(",\"token_count\":\(c.tokenCount),\"text\":"); w.string(c.text)
        w.raw(",\"metadata\":")
        if let m = c.metadata {
            w.raw("{")
            for (i, key) in m.keys.sorted().enumerated() {
                if i > 0 { w.raw(",") }
                w.string(key); w.raw(":"); w.string(m[key] ?? "")
            }
            w.raw("}")
        } else {
            w.raw("null")
        }
        if let m = c.chunkMetadata {
            w.raw(",\"chunk_metadata\":{")
            for (i, key) in m.keys.sorted().enumerated() {
                if i > 0 { w.raw(",") }
                w.string(key); w.raw(":"); w.string(m[key] ?? "")
            }
            w.raw("}")
        }
        w.raw(",\"source\":{\"size\":\(c.size),\"mtime\":\(c.mtime.description),\"content_hash\":"); w.string(c.contentHash)
        w.raw("},\"dense\":"); w.floats(c.dense)
        w.raw(",\"sparse\":{")
        for i in 0..<c.sparse.count {
            if i > 0 { w.raw(",") }
            w.raw("\"\(c.sparse.ids[i])\":"); w.number(c.sparse.weights[i])
        }
        w.raw("},\"colbert\":[")
        let d = c.colbert.dimension
        for row in 0..<c.colbert.count {
            if row > 0 { w.raw(",") }
            w.floats(c.colbert.values[row * d ..< (row + 1) * d])
        }
        w.raw("]}\n")
    }
}

extension JSONEncoder {
    /// Keys sorted, so the same settings always print the same.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
