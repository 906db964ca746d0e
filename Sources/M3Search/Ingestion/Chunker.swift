import M3Tokenizer

/// A token window of a document.
struct Chunk: Sendable {
    var ordinal: Int
    /// `<s>` + window + `</s>`: what the encoder sees.
    var tokenIDs: [Int32]
    /// Range in the document text, in Unicode scalars (code points, as Python indexes strings).
    var charStart: Int
    var charEnd: Int
    var text: String
    /// JSON object locating the chunk in its source ({"page": "3"}); nil for plain text.
    var metadata: String? = nil
}

/// Splits a document into windows of `maxLength − 2` tokens that overlap by `overlap`
/// tokens, each mapped back to its character range through the tokenizer's offsets.
///
/// With a passage `prefix` ("passage: " for e5 models), every chunk is
/// `<s>` + prefix tokens + window + `</s>`: the window shrinks by the prefix's tokens, and
/// the character ranges and texts stay those of the document's own text. The prefix is
/// tokenized together with the text (as `encode("passage: " + text)` would), so a
/// document that fits in one chunk gets exactly the tokens of the joined text; tokens
/// that end inside the prefix are the prefix's.
enum Chunker {
    static func chunks(of text: String, tokenizer: XLMRobertaTokenizer, maxLength: Int, overlap: Int, prefix: String = "") -> [Chunk] {
        let (ids, offsets) = tokenizer.encodeWithOffsets(prefix + text, maxLength: Int(Int32.max))
        guard ids.count > 2 else { return [] }
        let prefixBytes = prefix.utf8.count
        let tokens = 1 ..< ids.count - 1  // without <s> and </s>
        // A token that straddles the boundary (a space of the prefix glued to the text's
        // first word) belongs to the text.
        let prefixCount = tokens.prefix { offsets[$0].upperBound <= prefixBytes && offsets[$0].lowerBound < prefixBytes }.count
        let prefixIDs = Array(ids[1 ..< 1 + prefixCount])
        let contentIDs = Array(ids[1 + prefixCount ..< ids.count - 1])
        // Offsets into the document's own text.
        let contentOffsets = offsets[1 + prefixCount ..< offsets.count - 1].map { r in
            max(0, r.lowerBound - prefixBytes) ..< max(0, r.upperBound - prefixBytes)
        }
        guard !contentIDs.isEmpty else { return [] }
        let window = max(1, maxLength - 2 - prefixIDs.count)
        let stride = max(1, window - max(0, min(overlap, window - 1)))

        var spans: [(Int, Int)] = []  // token ranges
        var start = 0
        while start < contentIDs.count {
            let end = min(start + window, contentIDs.count)
            spans.append((start, end))
            if end == contentIDs.count { break }
            start += stride
        }
        // Byte ranges of each span, then one pass to turn byte offsets into scalar offsets.
        let utf8 = Array(text.utf8)
        var byteRanges: [(Int, Int)] = spans.map { (s, e) in
            let lo = contentOffsets[s ..< e].lazy.filter { !$0.isEmpty }.map(\.lowerBound).min() ?? 0
            let hi = contentOffsets[s ..< e].lazy.filter { !$0.isEmpty }.map(\.upperBound).max() ?? lo
            return (max(0, min(lo, utf8.count)), max(0, min(hi, utf8.count)))
        }
        for i in byteRanges.indices where byteRanges[i].1 < byteRanges[i].0 { byteRanges[i].1 = byteRanges[i].0 }
        let scalarOffsets = scalarIndices(of: byteRanges.flatMap { [$0.0, $0.1] }, in: utf8)
        return spans.enumerated().map { n, span in
            let (b0, b1) = byteRanges[n]
            return Chunk(ordinal: n, tokenIDs: [XLMRobertaTokenizer.bos] + prefixIDs + contentIDs[span.0 ..< span.1] + [XLMRobertaTokenizer.eos],
                         charStart: scalarOffsets[2 * n], charEnd: scalarOffsets[2 * n + 1],
                         text: String(decoding: utf8[b0 ..< b1], as: UTF8.self))
        }
    }

    /// Scalar index of each UTF-8 byte offset (offsets need not be sorted).
    static func scalarIndices(of byteOffsets: [Int], in utf8: [UInt8]) -> [Int] {
        let order = byteOffsets.indices.sorted { byteOffsets[$0] < byteOffsets[$1] }
        var result = [Int](repeating: 0, count: byteOffsets.count)
        var byte = 0, scalar = 0
        for i in order {
            let target = byteOffsets[i]
            while byte < target && byte < utf8.count {
                if utf8[byte] & 0xC0 != 0x80 { scalar += 1 }
                byte += 1
            }
            // A target inside a scalar counts that scalar as started.
            result[i] = scalar
        }
        return result
    }
}
