import ArgumentParser
import Foundation
import M3Search

/// `m3search info`: an index's settings, counts and size by component.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show an index's settings, counts and size by component (no model needed).")

    @OptionGroup var location: IndexPathOption

    @Flag(name: [.customShort("j"), .long], help: "Print one JSON object.")
    var json = false

    func run() throws {
        let info = try IndexInfo.read(path: location.index)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            guard var object = try JSONSerialization.jsonObject(with: encoder.encode(info)) as? [String: Any] else {
                throw M3SearchError(.other, "the index information does not encode as a JSON object")
            }
            object["bytesPerChunk"] = info.bytesPerChunk
            object["bytesPerToken"] = info.bytesPerToken
            object["colbertBytesPerRow"] = info.colbertBytesPerRow
            object["storageCost"] = Self.costObject(info.settings)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let s = info.settings
        print("index: \(info.path)")
        print("storage: ColBERT \(s.colbertStorage), dense \(s.denseStorage), ColBERT pruning \(s.colbertPruning)")
        print("encoding: pooling \(s.pooling.rawValue), \(s.normalize ? "normalised" : "not normalised"), precision "
              + "\(s.precision?.description ?? "not recorded"); query prefix \(Self.quoted(s.queryPrefix)), passage prefix \(Self.quoted(s.passagePrefix))")
        print("chunking: max length \(s.maxLength), overlap \(s.overlap); HNSW M \(s.hnswM), efConstruction \(s.hnswEfConstruction); dimension \(s.dimension)")
        print("\(info.documents) documents, \(info.chunks) chunks, \(info.tokens) tokens, \(info.colbertRows) ColBERT rows")
        let c = info.components
        let rows: [(String, Int64)] = [("documents and text", c.documentsAndText), ("dense", c.dense), ("HNSW graph", c.hnswGraph),
                                       ("sparse postings", c.sparse), ("ColBERT", c.colbert), ("other", c.other)]
        let total = max(info.fileBytes, 1)
        for (name, bytes) in rows {
            print("  " + Self.pad(name, 20) + Self.pad(Self.size(bytes), 10, left: true)
                  + String(format: "  %5.1f%%  %10.1f B/chunk", 100 * Double(bytes) / Double(total),
                           info.chunks > 0 ? Double(bytes) / Double(info.chunks) : 0))
        }
        print("  " + Self.pad("total", 20) + Self.pad(Self.size(info.fileBytes), 10, left: true)
              + String(format: "  (%.0f bytes per chunk, %.1f per token; ColBERT %.1f per row)", info.bytesPerChunk,
                       info.bytesPerToken, info.colbertBytesPerRow)
              + (info.walBytes > 0 ? " + \(Self.size(info.walBytes)) write-ahead log" : ""))
        if !info.measuredInPages { print("  (SQLite lacks dbstat: components are payload sums)") }
        print("ranking cost of this storage against exact f16/f32, measured on a trained model (\(StorageCost.source)):")
        for (name, cost) in [("ColBERT \(s.colbertStorage)", StorageCost.colbert(s.colbertStorage)),
                             ("dense \(s.denseStorage)", StorageCost.dense(s.denseStorage))] {
            print("  " + (cost?.summary ?? "\(name): not measured"))
        }
    }

    /// `info --json`'s "storageCost": each component's measured nDCG@10 loss per mode and
    /// top-10 overlaps (null when the codec was not measured), and where the numbers come from.
    static func costObject(_ s: IndexSettings) -> [String: Any] {
        func entry(_ c: StorageCost?) -> Any {
            guard let c else { return NSNull() }
            return ["codec": c.codec, "ndcg@10_loss": Dictionary(uniqueKeysWithValues: zip(StorageCost.modes, c.ndcgLoss)),
                    "worst_ndcg@10_loss": c.worstLoss, "hybrid_top10_overlap": c.hybridOverlap,
                    "colbert_top10_overlap": c.colbertOverlap] as [String: Any]
        }
        return ["colbert": entry(StorageCost.colbert(s.colbertStorage)), "dense": entry(StorageCost.dense(s.denseStorage)),
                "source": StorageCost.source]
    }

    /// A prefix as the user would type it: in quotes, or "none".
    static func quoted(_ s: String) -> String {
        s.isEmpty ? "none" : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }

    static func size(_ bytes: Int64) -> String {
        let b = Double(bytes), kb = 1024.0, mb = kb * kb, gb = mb * kb
        if b >= gb { return String(format: "%.2f GB", b / gb) }
        if b >= mb { return String(format: "%.1f MB", b / mb) }
        if b >= kb { return String(format: "%.1f KB", b / kb) }
        return "\(bytes) B"
    }
}
