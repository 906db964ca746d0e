import Foundation

/// An evaluation set in the BEIR / TREC conventions: queries with ids and graded
/// relevance judgments (qrels) of documents, where a document id is the path as indexed
/// (or the id given to `add`).
///
/// ```swift
/// let set = try EvaluationSet(queriesFile: "queries.jsonl", qrelsFile: "qrels.tsv")
/// ```
public struct EvaluationSet: Sendable {
    public struct Query: Sendable, Equatable {
        public var id: String
        public var text: String
        public init(id: String, text: String) { self.id = id; self.text = text }
    }

    /// In file order.
    public var queries: [Query]
    /// query id → document id → relevance grade (0 = judged not relevant).
    public var qrels: [String: [String: Int]]

    public init(queries: [Query], qrels: [String: [String: Int]]) {
        self.queries = queries
        self.qrels = qrels
    }

    /// Reads both files. Throws `M3SearchError` (`.invalidInput`, `.notFound`) whose
    /// `underlying` `EvaluationError` names the file and line of the first problem.
    public init(queriesFile: String, qrelsFile: String) throws {
        self.init(queries: try Self.readQueries(file: queriesFile), qrels: try Self.readQrels(file: qrelsFile))
    }

    /// The queries that count: those with at least one relevant (grade > 0) judgment.
    /// Queries without one would score 0 whatever the ranking (TREC tools skip them too).
    public var judgedQueries: [Query] {
        queries.filter { q in qrels[q.id]?.values.contains { $0 > 0 } ?? false }
    }

    // MARK: - Readers

    /// Queries as JSON Lines, one `{"_id": "…", "text": "…"}` per line (BEIR's queries.jsonl);
    /// other fields (BEIR's "metadata") are ignored, blank lines skipped. `_id` may be a
    /// string or an integer. Duplicate ids and empty texts are errors.
    public static func readQueries(file: String) throws -> [Query] {
        try M3SearchError.boundary { try queries(file: file) }
    }

    private static func queries(file: String) throws -> [Query] {
        let data = try readFile(file)
        var queries: [Query] = []
        var seen = Set<String>()
        for (number, line) in lines(of: data) {
            guard !line.allSatisfy(isBlank) else { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw EvaluationError.malformed(file: file, line: number, detail: "not a JSON object; expected {\"_id\": \"…\", \"text\": \"…\"}")
            }
            let id: String
            switch object["_id"] {
            case let s as String where !s.isEmpty: id = s
            case let n as NSNumber where !(n is Bool) && n.doubleValue == n.doubleValue.rounded(): id = n.stringValue
            case nil: throw EvaluationError.malformed(file: file, line: number, detail: "no \"_id\" field")
            default: throw EvaluationError.malformed(file: file, line: number, detail: "\"_id\" must be a non-empty string or an integer")
            }
            guard let text = object["text"] as? String else {
                throw EvaluationError.malformed(file: file, line: number, detail: "no \"text\" string for query \(id)")
            }
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw EvaluationError.malformed(file: file, line: number, detail: "query \(id) has an empty text")
            }
            guard seen.insert(id).inserted else {
                throw EvaluationError.malformed(file: file, line: number, detail: "query id \(id) appears twice")
            }
            queries.append(Query(id: id, text: text))
        }
        if queries.isEmpty { throw EvaluationError.empty(file: file, what: "queries") }
        return queries
    }

    /// Qrels as tab-separated `query-id  corpus-id  score` (BEIR), with or without BEIR's
    /// header line `query-id\tcorpus-id\tscore`; TREC's four-column form
    /// `query-id  iteration  doc-id  relevance` (whitespace-separated) is read too. Scores are
    /// integer grades ≥ 0. A pair judged twice is an error.
    public static func readQrels(file: String) throws -> [String: [String: Int]] {
        try M3SearchError.boundary { try qrels(file: file) }
    }

    private static func qrels(file: String) throws -> [String: [String: Int]] {
        let data = try readFile(file)
        var qrels: [String: [String: Int]] = [:]
        var count = 0
        for (number, line) in lines(of: data) {
            guard !line.allSatisfy(isBlank) else { continue }
            let text = String(decoding: line, as: UTF8.self)
            // BEIR separates with tabs (ids may hold spaces); TREC with any whitespace.
            var fields = text.split(separator: "\t", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.count == 1 { fields = text.split(whereSeparator: { $0 == " " }).map(String.init) }
            if count == 0 && fields.count == 3 && fields[0] == "query-id" && fields[1] == "corpus-id" { continue }
            let query: String, document: String, grade: String
            switch fields.count {
            case 3: (query, document, grade) = (fields[0], fields[1], fields[2])
            case 4: (query, document, grade) = (fields[0], fields[2], fields[3])
            default:
                throw EvaluationError.malformed(file: file, line: number, detail: "expected 3 tab-separated fields (query-id, corpus-id, score), found \(fields.count)")
            }
            guard !query.isEmpty, !document.isEmpty else {
                throw EvaluationError.malformed(file: file, line: number, detail: "empty query id or document id")
            }
            guard let g = Int(grade), g >= 0 else {
                throw EvaluationError.malformed(file: file, line: number, detail: "score \"\(grade)\" is not a non-negative integer")
            }
            guard qrels[query, default: [:]].updateValue(g, forKey: document) == nil else {
                throw EvaluationError.malformed(file: file, line: number, detail: "query \(query) judges document \(document) twice")
            }
            count += 1
        }
        if count == 0 { throw EvaluationError.empty(file: file, what: "judgments") }
        return qrels
    }

    private static func readFile(_ file: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: file) else { throw EvaluationError.unreadable(file: file) }
        return data
    }

    /// Lines with their 1-based numbers, "\r\n" tolerated.
    private static func lines(of data: Data) -> [(Int, Data.SubSequence)] {
        data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated().map { i, line in
            (i + 1, line.last == UInt8(ascii: "\r") ? line.dropLast() : line)
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == 32 || byte == 9 || byte == 13 }
}

/// Problems with evaluation files.
public enum EvaluationError: Error, CustomStringConvertible, Equatable, Sendable {
    case unreadable(file: String)
    case malformed(file: String, line: Int, detail: String)
    case empty(file: String, what: String)
    case noJudgedQueries(String)
    case invalidMetric(String)
    case invalidGrid(String)

    public var description: String {
        switch self {
        case .unreadable(let file): return "Cannot read \(file): check the path and its permissions."
        case .malformed(let file, let line, let detail): return "\(file):\(line): \(detail)"
        case .empty(let file, let what): return "\(file) holds no \(what)."
        case .noJudgedQueries(let s): return "No query can be evaluated: \(s)"
        case .invalidMetric(let s): return "Unknown metric \"\(s)\": use ndcg@K, recall@K or mrr@K (e.g. ndcg@10)."
        case .invalidGrid(let s): return "Invalid grid: \(s)"
        }
    }
}

/// A ranking metric at a cutoff, with the standard TREC definitions (trec_eval's
/// ndcg_cut, recall, and reciprocal rank cut at K), graded relevance from the qrels.
public enum RankingMetric: Hashable, Sendable, CustomStringConvertible {
    /// Σ_{i≤K} rel_i / log2(i + 1), divided by the same sum over the ideal ordering of all judged grades.
    case ndcg(Int)
    /// Relevant (grade > 0) documents in the top K / all relevant documents.
    case recall(Int)
    /// 1 / rank of the first relevant document in the top K, 0 if none.
    case mrr(Int)

    /// nDCG@10, Recall@100, MRR@10: what `m3search eval` reports.
    public static let standard: [RankingMetric] = [.ndcg(10), .recall(100), .mrr(10)]

    /// Parses "ndcg@10", "recall@100", "mrr@10" (case-insensitive).
    /// Throws `M3SearchError.invalidArgument` (`underlying`: `EvaluationError.invalidMetric`).
    public init(parsing text: String) throws {
        self = try M3SearchError.boundary { try Self.parse(text) }
    }

    private static func parse(_ text: String) throws -> RankingMetric {
        let parts = text.lowercased().split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[1]), k >= 1, k <= 10_000 else { throw EvaluationError.invalidMetric(text) }
        switch parts[0] {
        case "ndcg": return .ndcg(k)
        case "recall": return .recall(k)
        case "mrr": return .mrr(k)
        default: throw EvaluationError.invalidMetric(text)
        }
    }

    public var cutoff: Int {
        switch self { case .ndcg(let k), .recall(let k), .mrr(let k): return k }
    }

    public var description: String {
        switch self {
        case .ndcg(let k): return "ndcg@\(k)"
        case .recall(let k): return "recall@\(k)"
        case .mrr(let k): return "mrr@\(k)"
        }
    }

    /// The metric of one ranked list of document ids (best first, each id once) against
    /// one query's judgments. Documents without a judgment count as not relevant.
    public func value(ranking: [String], judgments: [String: Int]) -> Double {
        let top = ranking.prefix(cutoff)
        switch self {
        case .ndcg:
            var dcg = 0.0
            for (i, id) in top.enumerated() { dcg += Double(max(judgments[id] ?? 0, 0)) / log2(Double(i + 2)) }
            var idcg = 0.0
            for (i, grade) in judgments.values.filter({ $0 > 0 }).sorted(by: >).prefix(cutoff).enumerated() {
                idcg += Double(grade) / log2(Double(i + 2))
            }
            return idcg > 0 ? dcg / idcg : 0
        case .recall:
            let relevant = judgments.values.filter { $0 > 0 }.count
            guard relevant > 0 else { return 0 }
            return Double(top.filter { (judgments[$0] ?? 0) > 0 }.count) / Double(relevant)
        case .mrr:
            guard let i = top.firstIndex(where: { (judgments[$0] ?? 0) > 0 }) else { return 0 }
            return 1 / Double(i - top.startIndex + 1)
        }
    }

    /// The mean over queries of `value`, for rankings given per query id. Queries without a
    /// relevant judgment are left out (see `EvaluationSet.judgedQueries`).
    public static func mean(_ metric: RankingMetric, rankings: [String: [String]], qrels: [String: [String: Int]]) -> Double {
        var sum = 0.0, n = 0
        for (query, ranking) in rankings {
            guard let judgments = qrels[query], judgments.values.contains(where: { $0 > 0 }) else { continue }
            sum += metric.value(ranking: ranking, judgments: judgments)
            n += 1
        }
        return n > 0 ? sum / Double(n) : 0
    }
}
