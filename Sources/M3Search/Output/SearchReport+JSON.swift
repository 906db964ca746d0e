import Foundation

/// The JSON form of search results, one encoder for `m3search query --json` and the
/// HTTP server's `POST /search`, so the two cannot drift apart:
///
/// ```json
/// {"results": [{"rank": 1, "score": 0.61, "scores": {"dense": 0.7, "sparse": 0.2, "colbert": 0.8},
///               "path": "notes/a.md", "chunk": 0, "metadata": null, "snippet": "…"}],
///  "explain": {"dense_candidates": 100, …}}
/// ```
/// A mode with weight 0 has a `null` score; `metadata` is the object given when the
/// document was added, or `null`; `explain` is present only when asked for, and holds
/// `model_load` when `modelLoad` is given (the command line loads the model per query;
/// a server loaded it once, long before).
extension SearchReport {
    package func writeJSON(query: String, explain: Bool, modelLoad: LoadTimings? = nil, indexOpen: IndexOpenTimings? = nil,
                           to out: inout JSONWriter) {
        let terms = queryTerms(query)
        out.raw("{\"results\":[")
        for (i, r) in results.enumerated() {
            if i > 0 { out.raw(",") }
            out.raw("{\"rank\":"); out.number(r.rank)
            out.raw(",\"score\":"); out.number(r.score)
            out.raw(",\"scores\":{\"dense\":"); out.number(r.dense)
            out.raw(",\"sparse\":"); out.number(r.sparse)
            out.raw(",\"colbert\":"); out.number(r.colbert)
            out.raw("},\"path\":"); out.string(r.path)
            out.raw(",\"chunk\":"); out.number(r.chunk)
            out.raw(",\"metadata\":")
            if let metadata = r.metadata {
                out.raw("{")
                // Sorted keys: the same document always prints the same bytes.
                for (j, key) in metadata.keys.sorted().enumerated() {
                    if j > 0 { out.raw(",") }
                    out.string(key)
                    out.raw(":")
                    out.string(metadata[key]!)
                }
                out.raw("}")
            } else {
                out.raw("null")
            }
            out.raw(",\"snippet\":"); out.string(snippet(r.text, terms: terms, highlight: false))
            out.raw("}")
        }
        out.raw("]")
        if explain {
            out.raw(",\"explain\":{\"dense_candidates\":"); out.number(denseCandidates)
            out.raw(",\"sparse_candidates\":"); out.number(sparseCandidates)
            out.raw(",\"candidates\":"); out.number(candidates)
            out.raw(",\"encode_ms\":"); out.number(encodeSeconds * 1000)
            out.raw(",\"candidates_ms\":"); out.number(candidateSeconds * 1000)
            out.raw(",\"score_ms\":"); out.number(scoreSeconds * 1000)
            out.raw(",\"fuse_ms\":"); out.number(fuseSeconds * 1000)
            if let filterDocuments, let filterChunks {
                out.raw(",\"filter\":{\"documents\":"); out.number(filterDocuments)
                out.raw(",\"chunks\":"); out.number(filterChunks)
                out.raw(",\"plan\":"); out.string(filterPlan ?? "")
                out.raw("}")
            }
            if let modelLoad {
                out.raw(",\"model_load\":")
                modelLoad.writeJSON(to: &out)
            }
            if let indexOpen {
                out.raw(",\"index_open\":")
                indexOpen.writeJSON(to: &out)
            }
            out.raw("}")
        }
        out.raw("}")
    }
}

/// Lower-cased words of the query (letters and digits, 2+ characters), for highlighting.
package func queryTerms(_ query: String) -> [String] {
    query.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init).filter { $0.count >= 2 }
}

/// Up to ~300 characters of the chunk, starting near the first query term, whitespace
/// collapsed; terms in bold (ANSI) when `highlight` is set, for a terminal.
package func snippet(_ text: String, terms: [String], highlight: Bool) -> String {
    let s = asciiSnippetWindow(text, terms: terms) ?? snippetWindow(text, terms: terms)
    guard highlight, !terms.isEmpty else { return s }
    var out = ""
    var rest = Substring(s)
    while !rest.isEmpty {
        let lowerRest = rest.lowercased()
        if let t = terms.first(where: { lowerRest.hasPrefix($0) }), rest.count >= t.count {
            out += "\u{1B}[1m" + rest.prefix(t.count) + "\u{1B}[0m"
            rest = rest.dropFirst(t.count)
        } else {
            out.append(rest.removeFirst())
        }
    }
    return out
}

/// `snippet` without highlighting, on Characters: any text (and the reference for the ASCII path).
package func snippetWindow(_ text: String, terms: [String]) -> String {
    let flat = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    let lower = flat.lowercased()
    var start = flat.startIndex
    if let first = terms.compactMap({ lower.range(of: $0)?.lowerBound }).min() {
        let offset = lower.distance(from: lower.startIndex, to: first)
        start = flat.index(flat.startIndex, offsetBy: max(0, offset - 60))
    }
    var s = String(flat[start...].prefix(300))
    if start > flat.startIndex { s = "…" + s }
    if flat.distance(from: start, to: flat.endIndex) > 300 { s += "…" }
    return s
}

/// `snippetWindow` on Unicode scalars when the terms are ASCII and every scalar of the text is
/// ASCII or `snippetPlainScalar` (nil otherwise). There each scalar is one Character (CR LF, the
/// one exception, is whitespace and collapsed away), lower-casing maps a scalar to one scalar,
/// and an ASCII term matches where its scalars do, so offsets in scalars are offsets in
/// Characters (`SnippetTests` checks all of this against the Character path). The Character path
/// took 5.7% of `serve`'s CPU under 8 clients (10 snippets per answer); this one ~40× less.
package func asciiSnippetWindow(_ text: String, terms: [String]) -> String? {
    guard terms.allSatisfy({ $0.utf8.allSatisfy { $0 < 0x80 } }) else { return nil }
    var flat: [Unicode.Scalar] = [], lower: [UInt32] = []
    flat.reserveCapacity(text.utf8.count)
    lower.reserveCapacity(text.utf8.count)
    var space = false
    // Non-ASCII scalars seen: their lower case, or nil for whitespace (asked once each).
    var seen: [UInt32: UInt32?] = [:]
    for s in text.unicodeScalars {
        let v = s.value
        var folded = v
        if v < 0x80 {
            if v == 32 || (v >= 9 && v <= 13) { space = !flat.isEmpty; continue }
            if v >= 65 && v <= 90 { folded = v | 0x20 }
        } else {
            if seen[v] == nil {
                guard snippetPlainScalar(v) else { return nil }
                let l = String(Character(s)).lowercased().unicodeScalars
                guard l.count == 1, let f = l.first else { return nil }
                seen[v] = Character(s).isWhitespace ? .some(nil) : f.value
            }
            guard let f = seen[v]! else { space = !flat.isEmpty; continue }
            folded = f
        }
        if space { flat.append(" "); lower.append(32); space = false }
        flat.append(s)
        lower.append(folded)
    }
    var first: Int? = nil
    for term in terms {
        let needle = term.unicodeScalars.map(\.value)
        guard let head = needle.first, needle.count <= lower.count else { continue }
        var i = 0
        let last = lower.count - needle.count
        while i <= last, first.map({ i < $0 }) ?? true {
            if lower[i] == head && lower[i ..< i + needle.count].elementsEqual(needle) {
                first = i
                break
            }
            i += 1
        }
    }
    let start = max(0, (first ?? 0) - 60)
    var window = String.UnicodeScalarView()
    window.append(contentsOf: flat[start ..< min(start + 300, flat.count)])
    var s = start > 0 ? "…" : ""
    s += String(window)
    if flat.count - start > 300 { s += "…" }
    return s
}

/// Non-ASCII scalars `asciiSnippetWindow` takes: Latin-1 and Latin Extended-A letters and
/// symbols (not the soft hyphen, not İ, whose lower case is two scalars) and general
/// punctuation (dashes, quotes, bullets, ellipsis; not the separators, the zero-width or
/// bidirectional controls). None joins a neighbour into one Character.
package func snippetPlainScalar(_ v: UInt32) -> Bool {
    (v >= 0xA0 && v <= 0x17F && v != 0xAD && v != 0x130) || (v >= 0x2010 && v <= 0x2027) || (v >= 0x2030 && v <= 0x205E)
}

extension LoadTimings {
    /// `{"total_ms": …, "config_ms": …, "tokenizer_ms": …, "tokenizer_cached": true, "weights_ms": …,
    /// "verification_ms": …, "identity_cached": true, "packing_ms": …, "packing_cached": false}`: the fields of
    /// `description`, for `--explain --json`.
    package func writeJSON(to out: inout JSONWriter) {
        out.raw("{\"total_ms\":"); out.number(total * 1000)
        out.raw(",\"config_ms\":"); out.number(config * 1000)
        out.raw(",\"tokenizer_ms\":"); out.number(tokenizer * 1000)
        out.raw(",\"tokenizer_cached\":\(tokenizerFromCache)")
        out.raw(",\"weights_ms\":"); out.number(weights * 1000)
        out.raw(",\"verification_ms\":"); out.number(verification * 1000)
        out.raw(",\"identity_cached\":\(identityFromCache)")
        out.raw(",\"packing_ms\":"); out.number(packing * 1000)
        out.raw(",\"packing_cached\":\(packingFromCache)")
        out.raw("}")
    }
}

extension IndexOpenTimings {
    /// `{"total_ms": …, "store_ms": …, "documents_ms": …, "postings_ms": …, "graph_records_ms": …,
    /// "dense_vectors_ms": …, "graph_checks_ms": …, "connections_ms": …, "graph_source": "image"}`
    /// (and "graph_image_ms"): the fields of
    /// `description`, for `--explain --json`.
    package func writeJSON(to out: inout JSONWriter) {
        let fields: [(String, Double)] = [("total_ms", total), ("store_ms", store), ("documents_ms", documents),
                                          ("postings_ms", postings), ("graph_image_ms", graphImage), ("graph_records_ms", graphRecords),
                                          ("dense_vectors_ms", denseVectors), ("graph_checks_ms", graphFinish),
                                          ("connections_ms", connections)]
        for (i, (key, seconds)) in fields.enumerated() {
            out.raw(i == 0 ? "{" : ",")
            out.string(key)
            out.raw(":")
            out.number(seconds * 1000)
        }
        out.raw(",\"graph_source\":")
        out.string(graphSource)
        out.raw("}")
    }
}
