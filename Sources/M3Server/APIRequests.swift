import Foundation
import M3Search

// Request bodies of the JSON API, decoded strictly: every field the OpenAPI document
// does not list is rejected by name, every type and range is checked, and each failure
// is a 400 whose message names the field (`documents[2].id`, `weights.dense`, …).

/// `POST /search`: the options of `m3search query`.
struct SearchRequest: Decodable {
    static let maxK = 10_000
    static let maxCandidates = 10_000

    var query: String
    var options: SearchOptions
    var explain: Bool

    private enum Key: String, CodingKey, CaseIterable {
        case query, k, weights, mode, fusion, candidates, ef_search, chunks, explain, filter
    }

    /// Only white space: the characters the OpenAPI `pattern` of `query` excludes,
    /// Unicode's White_Space, U+FEFF (in JavaScript's `\s`) and U+200B (Foundation on
    /// Linux trims it with the rest, so the library would call such a query empty).
    /// Listed, not taken from a character class, so that the server and every schema
    /// validator (schemathesis, JavaScript, ICU) agree on each character.
    static func isBlank(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { s in
            switch s.value {
            case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200B, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF: return true
            default: return false
            }
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, keyedBy: Key.self)
        query = try c.decode(String.self, forKey: .query)
        if Self.isBlank(query) { throw APIError.badRequest("query is empty or only white space") }
        var options = SearchOptions()
        options.k = try c.integer(forKey: .k) ?? options.k
        try checkRange(options.k, 1...Self.maxK, "k")
        if let weights = try c.optional(WeightsBody.self, forKey: .weights) { options.weights = weights.value }
        if let mode = try c.optional(String.self, forKey: .mode) {
            guard let m = SearchOptions.Mode(rawValue: mode) else {
                throw APIError.badRequest("mode must be one of \(SearchOptions.Mode.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(mode)\")")
            }
            options.mode = m
        }
        if let fusion = try c.optional(String.self, forKey: .fusion) {
            guard let f = SearchOptions.Fusion(rawValue: fusion) else {
                throw APIError.badRequest("fusion must be one of \(SearchOptions.Fusion.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(fusion)\")")
            }
            options.fusion = f
        }
        options.candidates = try c.integer(forKey: .candidates) ?? options.candidates
        try checkRange(options.candidates, 1...Self.maxCandidates, "candidates")
        let efIsNull = c.contains(.ef_search) ? try c.decodeNil(forKey: .ef_search) : true
        options.efSearch = efIsNull ? nil : try c.integer(forKey: .ef_search)
        if let ef = options.efSearch { try checkRange(ef, 1...Self.maxCandidates, "ef_search") }
        options.groupByDocument = !(try c.optional(Bool.self, forKey: .chunks) ?? false)
        explain = try c.optional(Bool.self, forKey: .explain) ?? false
        if let filter = try c.optional(FilterBody.self, forKey: .filter)?.value, !filter.isEmpty { options.filter = filter }
        self.options = options
    }
}

/// `"filter": {"path": ["*.md"], "metadata": {"lang": "en"}, "modified_after": "2024-05-01",
/// "modified_before": "2024-06-01T12:00:00Z"}`: every field optional, every one given must hold.
struct FilterBody: Decodable {
    static let maxPatterns = 1000
    static let maxPairs = 100
    var value: SearchFilter

    private enum Key: String, CodingKey, CaseIterable { case path, metadata, modified_after, modified_before }

    init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, keyedBy: Key.self)
        var filter = SearchFilter()
        filter.paths = try c.optional([String].self, forKey: .path) ?? []
        if filter.paths.count > Self.maxPatterns {
            throw APIError.badRequest("filter.path has \(filter.paths.count) patterns; at most \(Self.maxPatterns)")
        }
        if let i = filter.paths.firstIndex(where: { $0.isEmpty || $0.utf8.count > 4096 }) {
            throw APIError.badRequest("filter.path[\(i)] must have 1 to 4096 bytes")
        }
        filter.metadata = try c.optional([String: String].self, forKey: .metadata) ?? [:]
        if filter.metadata.count > Self.maxPairs {
            throw APIError.badRequest("filter.metadata has \(filter.metadata.count) keys; at most \(Self.maxPairs)")
        }
        for (key, name) in [(Key.modified_after, "filter.modified_after"), (.modified_before, "filter.modified_before")] {
            guard let text = try c.optional(String.self, forKey: key) else { continue }
            guard let date = SearchFilter.date(text) else {
                throw APIError.badRequest("\(name) must be an ISO 8601 date (2024-05-01) or date-time (2024-05-01T12:30:00Z) (got \"\(text)\")")
            }
            if key == .modified_after { filter.modifiedAfter = date } else { filter.modifiedBefore = date }
        }
        value = filter
    }
}

/// `"weights": {"dense": 0.4, "sparse": 0.3, "colbert": 0.3}`: all three, in [0, 10⁶], not all 0.
struct WeightsBody: Decodable {
    /// Weights are relative; the cap keeps their sum far from Float's overflow.
    static let maximum = 1_000_000.0
    var value: FusionWeights

    private enum Key: String, CodingKey, CaseIterable { case dense, sparse, colbert }

    init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, keyedBy: Key.self)
        var w: [Float] = []
        for key in Key.allCases {
            let v = try c.decode(Double.self, forKey: key)
            guard v >= 0, v <= WeightsBody.maximum else {
                throw APIError.badRequest("weights.\(key.rawValue) must be between 0 and 1000000 (got \(v))")
            }
            // A positive weight below Float's range stays positive (the smallest Float).
            w.append(v > 0 && Float(v) == 0 ? .leastNonzeroMagnitude : Float(v))
        }
        guard w.contains(where: { $0 > 0 }) else {
            throw APIError.badRequest("weights are all zero; at least one of dense, sparse, colbert must be positive")
        }
        value = FusionWeights(dense: w[0], sparse: w[1], colbert: w[2])
    }
}

/// `POST /documents`: `{"documents": [{"id", "text", "metadata"}]}`.
struct DocumentsRequest: Decodable {
    var documents: [DocumentInput]

    private enum Key: String, CodingKey, CaseIterable { case documents }

    init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, keyedBy: Key.self)
        documents = try c.decode([DocumentBody].self, forKey: .documents).map(\.value)
        if documents.isEmpty { throw APIError.badRequest("documents is empty; send at least one {\"id\", \"text\"}") }
        // A repeated id: the last one wins, as if the documents came in two requests
        // (the library would otherwise store both under one id).
        var last: [String: Int] = [:]
        for (i, d) in documents.enumerated() { last[d.id] = i }
        if last.count < documents.count {
            documents = documents.enumerated().filter { last[$0.element.id] == $0.offset }.map(\.element)
        }
    }
}

struct DocumentBody: Decodable {
    var value: DocumentInput

    private enum Key: String, CodingKey, CaseIterable { case id, text, metadata }

    init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, keyedBy: Key.self)
        let id = try c.decode(String.self, forKey: .id)
        if id.isEmpty { throw APIError.badRequest("\(fieldName(decoder.codingPath + [Key.id])) is empty") }
        value = DocumentInput(id: id, text: try c.decode(String.self, forKey: .text),
                              metadata: try c.optional([String: String].self, forKey: .metadata, nullable: true))
    }
}

/// Decodes a request body, turning every decoding failure into a 400 that names the field.
func decodeBody<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    if bytes.isEmpty { throw APIError.badRequest("the request body is empty; send a JSON object") }
    do {
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    } catch let e as APIError {
        throw e
    } catch let DecodingError.keyNotFound(key, context) {
        throw APIError.badRequest("missing required field \(fieldName(context.codingPath + [key]))")
    } catch let DecodingError.typeMismatch(type, context) {
        throw APIError.badRequest("\(fieldName(context.codingPath)) must be \(typeName(type))")
    } catch let DecodingError.valueNotFound(type, context) {
        throw APIError.badRequest("\(fieldName(context.codingPath)) must be \(typeName(type)), not null")
    } catch let DecodingError.dataCorrupted(context) {
        if context.codingPath.isEmpty {
            throw APIError.badRequest("malformed JSON: \(context.debugDescription)")
        }
        throw APIError.badRequest("\(fieldName(context.codingPath)) is invalid: \(context.debugDescription)")
    } catch {
        throw APIError.badRequest("malformed JSON: \(error)")
    }
}

/// A keyed container that first rejects keys outside `Key`.
private func strictContainer<Key: CodingKey & CaseIterable & RawRepresentable>(
    _ decoder: any Decoder, keyedBy: Key.Type
) throws -> KeyedDecodingContainer<Key> where Key.RawValue == String {
    let any = try decoder.container(keyedBy: AnyKey.self)
    let known = Set(Key.allCases.map(\.rawValue))
    if let unknown = any.allKeys.first(where: { !known.contains($0.stringValue) }) {
        let allowed = Key.allCases.map(\.rawValue).joined(separator: ", ")
        throw APIError.badRequest("unknown field \"\(fieldName(decoder.codingPath + [unknown]))\"; allowed: \(allowed)")
    }
    return try decoder.container(keyedBy: Key.self)
}

extension KeyedDecodingContainer {
    /// The value when present; an explicit `null` is rejected like a wrong type (the
    /// OpenAPI document marks only `ef_search` and `metadata` nullable).
    /// An integer field, given as a whole JSON number ("k": 2.5 or "k": 1e40 name the field
    /// instead of failing as unreadable JSON).
    func integer(forKey key: Key) throws -> Int? {
        let value: Double?
        do { value = try optional(Double.self, forKey: key) } catch DecodingError.typeMismatch(_, let context) {
            throw DecodingError.typeMismatch(Int.self, context)
        } catch DecodingError.valueNotFound(_, let context) {
            throw DecodingError.valueNotFound(Int.self, context)
        }
        guard let value else { return nil }
        guard value == value.rounded(), abs(value) <= 1e15 else {
            throw APIError.badRequest("\(fieldName(codingPath + [key])) must be an integer (got \(value))")
        }
        return Int(value)
    }

    func optional<T: Decodable>(_ type: T.Type, forKey key: Key, nullable: Bool = false) throws -> T? {
        guard contains(key) else { return nil }
        if try decodeNil(forKey: key) {
            if nullable { return nil }
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [key], debugDescription: "null"))
        }
        return try decode(type, forKey: key)
    }
}

private func checkRange(_ value: Int, _ range: ClosedRange<Int>, _ name: String) throws {
    guard range.contains(value) else {
        throw APIError.badRequest("\(name) must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

/// `documents[2].metadata.lang`, or "the body" at the top level.
private func fieldName(_ path: [any CodingKey]) -> String {
    var name = ""
    for key in path {
        if let i = key.intValue { name += "[\(i)]" } else { name += (name.isEmpty ? "" : ".") + key.stringValue }
    }
    return name.isEmpty ? "the body" : name
}

private func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Int.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    case is Bool.Type: return "true or false"
    case is [String: String].Type: return "an object of strings"
    default:
        let name = "\(type)"
        if name.hasPrefix("Array") { return "an array" }
        if name.hasPrefix("Dictionary") || name.hasSuffix("Request") || name.hasSuffix("Body") { return "an object" }
        return name
    }
}
