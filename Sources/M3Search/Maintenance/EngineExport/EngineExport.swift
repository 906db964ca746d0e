import Foundation
import M3Model
import M3Store

/// `m3search export --format qdrant|milvus|vespa --out DIR`: what each engine's loader takes,
/// written from the same record stream as the JSON Lines export (`SearchIndex.export`), one
/// chunk in memory at a time. docs/engines.md describes the files and the queries that
/// reproduce m3search's ranking.
///
/// ```swift
/// let summary = try EngineExport.write(.qdrant, indexAt: "notes.m3index", to: "qdrant-export")
/// ```
///
/// The output is deterministic (the same index gives the same bytes). It is written into a
/// hidden staging folder next to `--out` and renamed into place when complete, so `--out`
/// either holds a whole export or is left as it was. Throws `M3SearchError`, with an
/// `ExportError` as the cause for an unusable `--out`, a failed write (the staging folder is
/// removed) or a value the engine cannot hold, and a `StoreError` for a missing or damaged index.
package enum EngineExport {
    package enum Engine: String, CaseIterable, Sendable {
        case qdrant, milvus, vespa
    }

    package struct Summary: Equatable {
        package var chunks = 0
        /// Files written, relative to the output folder, the manifest last.
        package var files: [String] = []
        /// What the engine could not take as it was (said on stderr and in the manifest).
        package var notes: [String] = []
    }

    /// The manifest every engine export starts from: settings, weights and file list.
    static let manifestName = "export.json"
    static let manifestFormat = "m3search-engine-export"
    static let manifestVersion = 1
    /// Milvus row files close once they pass this size (bulk import reads files up to 16 GB).
    package static let milvusPartBytes = 1 << 30

    /// Exports the index at `index` into the folder `out` (created; see the type's summary for
    /// what may already be there). `replacing`: replace a folder holding an earlier export.
    package static func write(_ engine: Engine, indexAt index: String, to out: String, replacing: Bool = false,
                              milvusPartBytes: Int = EngineExport.milvusPartBytes) throws -> Summary {
        try M3SearchError.boundary { try export(engine, indexAt: index, to: out, replacing: replacing, milvusPartBytes: milvusPartBytes) }
    }

    private static func export(_ engine: Engine, indexAt index: String, to out: String, replacing: Bool,
                               milvusPartBytes: Int) throws -> Summary {
        let target = try OutputTarget(out, replacing: replacing)
        let staging = try StagingFolder(next: target.path)
        do {
            var writer: (any EngineWriter)?
            var snapshot: IndexSnapshot?
            var count = 0
            try SearchIndex.export(indexAt: index, header: { header in
                snapshot = header
                switch engine {
                case .qdrant: writer = try QdrantExport(folder: staging, snapshot: header)
                case .milvus: writer = try MilvusExport(folder: staging, snapshot: header, partBytes: milvusPartBytes)
                case .vespa: writer = try VespaExport(folder: staging, snapshot: header)
                }
            }, chunk: { chunk in
                try writer!.add(chunk)
                count += 1
            })
            guard var writer, let snapshot else { throw StoreError.corrupt(path: index, detail: "the export read no header") }
            let notes = try writer.finish()
            try staging.write(manifestName, manifest(engine, snapshot: snapshot, chunks: count,
                                                     files: staging.files, notes: notes))
            try target.commit(staging)
            return Summary(chunks: count, files: staging.files, notes: notes)
        } catch {
            staging.remove()
            throw error
        }
    }

    /// Whether `folder` holds a manifest this exporter wrote (so `--force` may replace it).
    static func isEarlierExport(_ folder: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: folder + "/" + manifestName),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return object["format"] as? String == manifestFormat
    }

    /// The weights a query uses when it gives none: saved by `tune --save`, else the default.
    static func weights(_ snapshot: IndexSnapshot) -> FusionWeights { snapshot.defaultWeights ?? FusionWeights() }

    private static func manifest(_ engine: Engine, snapshot: IndexSnapshot, chunks: Int, files: [String], notes: [String]) throws -> String {
        var w = JSONWriter()
        w.raw("{\"format\":"); w.string(manifestFormat)
        w.raw(",\"version\":\(manifestVersion),\"engine\":"); w.string(engine.rawValue)
        w.raw(",\"settings\":")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        w.raw(String(decoding: try encoder.encode(snapshot.settings), as: UTF8.self))
        w.raw(",\"default_weights\":")
        if let saved = snapshot.defaultWeights { writeWeights(saved, to: &w) } else { w.raw("null") }
        w.raw(",\"weights\":"); writeWeights(weights(snapshot), to: &w)
        w.raw(",\"documents\":\(snapshot.documents),\"chunks\":\(chunks),\"files\":[")
        for (i, file) in files.enumerated() { if i > 0 { w.raw(",") }; w.string(file) }
        w.raw("],\"notes\":[")
        for (i, note) in notes.enumerated() { if i > 0 { w.raw(",") }; w.string(note) }
        w.raw("]}\n")
        return String(decoding: w.bytes, as: UTF8.self)
    }

    private static func writeWeights(_ weights: FusionWeights, to w: inout JSONWriter) {
        w.raw("{\"dense\":"); w.number(weights.dense)
        w.raw(",\"sparse\":"); w.number(weights.sparse)
        w.raw(",\"colbert\":"); w.number(weights.colbert); w.raw("}")
    }
}

/// One engine's files: created when the header arrives, fed every chunk in export order.
protocol EngineWriter {
    mutating func add(_ chunk: ExportedChunk) throws
    /// Writes what needs the whole stream and closes every file; returns notes for the user.
    mutating func finish() throws -> [String]
}

extension ExportedChunk {
    /// The chunk's id in every export: `"<doc_id>#<chunk>"`.
    var chunkID: String { "\(documentID)#\(ordinal)" }
}

/// Record pieces the three engines share.
enum ExportRecord {
    /// The fields every engine keeps beside the vectors, in this order:
    /// chunk_id, path, chunk, char_start, char_end, token_count, text, metadata ({} when none).
    /// `clean` rewrites strings an engine cannot hold as they are (Vespa).
    static func fields(_ c: ExportedChunk, to w: inout JSONWriter, clean: (String) -> String = { $0 }) {
        w.raw("\"chunk_id\":"); w.string(clean(c.chunkID))
        w.raw(",\"path\":"); w.string(clean(c.documentID))
        w.raw(",\"chunk\":\(c.ordinal),\"char_start\":\(c.charRange.lowerBound),\"char_end\":\(c.charRange.upperBound)")
        w.raw(",\"token_count\":\(c.tokenCount),\"text\":"); w.string(clean(c.text))
        w.raw(",\"metadata\":{")
        // One metadata object per engine record: the document's, with the chunk's page or
        // section added (what a search hit returns).
        if let m = IndexReader.merged(c.metadata, c.chunkMetadata) {
            for (i, key) in m.keys.sorted().enumerated() {
                if i > 0 { w.raw(",") }
                w.string(clean(key)); w.raw(":"); w.string(clean(m[key]!))
            }
        }
        w.raw("}")
    }

    /// `[v0,v1,…]`, refusing NaN and infinity (JSON has no spelling for them).
    static func vector<C: Collection>(_ values: C, to w: inout JSONWriter, chunk: ExportedChunk, name: String) throws where C.Element == Float {
        guard values.allSatisfy(\.isFinite) else { throw ExportError.nonFinite(chunk: chunk.chunkID, vector: name) }
        w.floats(values)
    }

    /// `{"<token id>":weight,…}`, the sparse form Milvus's loaders and Vespa's mapped tensors take.
    static func sparseObject(_ c: ExportedChunk, to w: inout JSONWriter) throws {
        guard c.sparse.weights.allSatisfy(\.isFinite) else { throw ExportError.nonFinite(chunk: c.chunkID, vector: "sparse") }
        w.raw("{")
        for i in 0 ..< c.sparse.count {
            if i > 0 { w.raw(",") }
            w.raw("\"\(c.sparse.ids[i])\":"); w.number(c.sparse.weights[i])
        }
        w.raw("}")
    }
}
