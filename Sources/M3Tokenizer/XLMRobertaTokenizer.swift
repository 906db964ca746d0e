import CSentencePiece
import Foundation

/// An error raised while loading the tokenizer.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The SentencePiece model file is missing, unreadable or not an XLM-R model.
    case cannotLoadModel(path: String, message: String)
    /// The tokenizer.json given for exact Hugging Face scores cannot be used.
    case cannotLoadScores(path: String, message: String)
    /// A cached image of the tokenizer's tables is damaged (it is rebuilt).
    case invalidImage(message: String)

    public var description: String {
        switch self {
        case let .cannotLoadModel(path, message):
            return "cannot load SentencePiece model \(path): \(message)"
        case let .cannotLoadScores(path, message):
            return "cannot load Unigram scores from \(path): \(message)"
        case let .invalidImage(message):
            return "cannot use the cached tokenizer tables: \(message)"
        }
    }
}

/// The BGE-M3 / XLM-RoBERTa tokenizer, producing exactly the `input_ids` of Hugging Face's
/// `XLMRobertaTokenizerFast` (as FlagEmbedding loads it) with fairseq ids:
/// `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, SentencePiece piece id + 1, `<mask>`=250001.
///
/// A sequence is `<s>` + tokens + `</s>`; `maxLength` counts both and keeps `</s>`.
/// Literal special tokens in the text (`<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>`) are
/// encoded as those tokens, as Hugging Face does.
///
/// Immutable after `init`; safe to use from any number of threads.
public final class XLMRobertaTokenizer: @unchecked Sendable {
    public static let bos: Int32 = 0
    public static let pad: Int32 = 1
    public static let eos: Int32 = 2
    public static let unk: Int32 = 3
    /// XLM-R's `<mask>`; in general the last id (`vocabularySize - 1`, see `maskID`).
    public static let mask: Int32 = 250001

    /// Number of ids (250002 for XLM-R).
    public let vocabularySize: Int
    /// `<mask>`: fairseq puts it after the SentencePiece pieces, so it is the last id
    /// (250001 for XLM-R, lower for a smaller SentencePiece model).
    public var maskID: Int32 { Int32(vocabularySize - 1) }

    private let handle: OpaquePointer
    /// Keeps a cache image's memory alive while `handle` points into it.
    private let imageOwner: AnyObject?

    /// sentencepiece.bpe.model is 5 MB for XLM-R, tokenizer.json 17 MB for BAAI/bge-m3.
    package static let modelFileLimit = 64 << 20
    package static let tokenizerJSONLimit = 128 << 20

    /// Loads `sentencepiece.bpe.model`. Only regular files are read (a FIFO or device is
    /// refused), and none larger than any genuine one.
    ///
    /// - Parameter tokenizerJSONPath: optional Hugging Face `tokenizer.json` of the same
    ///   model. Its Unigram scores are float32 scores rounded through decimal text, one
    ///   double ulp away from the model file's for about a quarter of the pieces; they only
    ///   matter where two segmentations tie exactly (long runs of the same punctuation
    ///   after other characters, e.g. "x//////////////"). Pass it for bit-exact agreement
    ///   with Hugging Face there.
    public convenience init(modelPath: String, tokenizerJSONPath: String? = nil) throws {
        let model: [UInt8]
        do { model = try RegularFile.read(modelPath, limit: Self.modelFileLimit).bytes } catch {
            throw TokenizerError.cannotLoadModel(path: modelPath, message: error.message)
        }
        var json: [UInt8]?
        if let jsonPath = tokenizerJSONPath {
            do { json = try RegularFile.read(jsonPath, limit: Self.tokenizerJSONLimit).bytes } catch {
                throw TokenizerError.cannotLoadScores(path: jsonPath, message: error.message)
            }
        }
        try self.init(model: model, modelPath: modelPath, tokenizerJSON: json, tokenizerJSONPath: tokenizerJSONPath)
    }

    /// Builds the tokenizer from the bytes of sentencepiece.bpe.model (and tokenizer.json);
    /// the paths only name the files in errors.
    package init(model: [UInt8], modelPath: String, tokenizerJSON: [UInt8]?, tokenizerJSONPath: String?) throws {
        var error = [CChar](repeating: 0, count: 1024)
        let created: OpaquePointer? = model.withUnsafeBufferPointer { bytes in
            csp_create(bytes.baseAddress, bytes.count, &error, error.count)
        }
        guard let created else {
            throw TokenizerError.cannotLoadModel(path: modelPath, message: Self.message(error))
        }
        if let json = tokenizerJSON {
            let status = json.withUnsafeBufferPointer { bytes in
                csp_set_hf_scores(created, bytes.baseAddress, bytes.count, &error, error.count)
            }
            if status != 0 {
                csp_free(created)
                throw TokenizerError.cannotLoadScores(path: tokenizerJSONPath ?? "tokenizer.json", message: Self.message(error))
            }
        }
        handle = created
        imageOwner = nil
        vocabularySize = Int(csp_vocab_size(created))
    }

    /// A tokenizer over tables written by `serializedImage()`, used in place. `image` must
    /// be 8-byte aligned and stay valid while `owner` lives (e.g. a memory map `owner`
    /// unmaps when released). Every count and index is validated; a damaged image throws
    /// `TokenizerError.invalidImage`.
    package init(image: UnsafeRawBufferPointer, keepingAlive owner: AnyObject) throws {
        var error = [CChar](repeating: 0, count: 256)
        guard let created = csp_create_from_image(image.baseAddress?.assumingMemoryBound(to: UInt8.self), image.count,
                                                  &error, error.count) else {
            throw TokenizerError.invalidImage(message: Self.message(error))
        }
        handle = created
        imageOwner = owner
        vocabularySize = Int(csp_vocab_size(created))
    }

    /// The tables `encode` reads, as one image for a cache file (see `init(image:keepingAlive:)`).
    package func serializedImage() -> [UInt8] {
        let size = csp_serialize(handle, nil, 0)
        var image = [UInt8](repeating: 0, count: size)
        image.withUnsafeMutableBufferPointer { _ = csp_serialize(handle, $0.baseAddress, size) }
        return image
    }

    deinit { csp_free(handle) }

    private static func message(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Token ids: `<s>`, the text's tokens (at most `maxLength - 2`), `</s>`.
    public func encode(_ text: String, maxLength: Int = 8192) -> [Int32] {
        var ids: [Int32] = []
        var offsets: [Range<Int>] = []
        run(text, maxLength: maxLength, wantOffsets: false, ids: &ids, offsets: &offsets)
        return ids
    }

    /// Token ids and, for each token, the UTF-8 byte range of `text` (`text.utf8`) it
    /// came from. `<s>` gets `0..<0` and `</s>` gets `n..<n` (n = byte count); a word's
    /// leading "▁" includes the whitespace it replaces; a "▁" that Hugging Face adds in
    /// front of a text segment has an empty range at the segment start. Ranges are
    /// non-decreasing; tokens from one character (e.g. "ﬁ" → "f", "i") share its range.
    public func encodeWithOffsets(_ text: String, maxLength: Int = 8192)
        -> (ids: [Int32], offsets: [Range<Int>])
    {
        var ids: [Int32] = []
        var offsets: [Range<Int>] = []
        run(text, maxLength: maxLength, wantOffsets: true, ids: &ids, offsets: &offsets)
        return (ids, offsets)
    }

    // MARK: - Implementation

    private static let specials: [(bytes: [UInt8], id: Int32)] = [
        (Array("<s>".utf8), bos), (Array("<pad>".utf8), pad), (Array("</s>".utf8), eos),
        (Array("<unk>".utf8), unk), (Array("<mask>".utf8), mask),
    ]

    /// Literal special token at `i` (Hugging Face matches them in the raw text, leftmost
    /// first; no two of them can match at the same position).
    @inline(__always)
    private static func special(at i: Int, in buf: UnsafeBufferPointer<UInt8>) -> (length: Int, id: Int32)? {
        guard buf[i] == UInt8(ascii: "<") else { return nil }
        for (bytes, id) in specials where i + bytes.count <= buf.count {
            var k = 1
            while k < bytes.count && buf[i + k] == bytes[k] { k += 1 }
            if k == bytes.count { return (bytes.count, id) }
        }
        return nil
    }

    private func run(
        _ text: String, maxLength: Int, wantOffsets: Bool, ids: inout [Int32], offsets: inout [Range<Int>]
    ) {
        var remaining = max(maxLength, 2) - 2
        var scratch = Scratch()
        var contiguous = text
        contiguous.withUTF8 { buf in
            let n = buf.count
            precondition(n < Int(Int32.max), "texts of 2 GiB or more are not supported")
            ids.reserveCapacity(min(n + 2, remaining + 2))
            ids.append(Self.bos)
            if wantOffsets { offsets.reserveCapacity(min(n + 2, remaining + 2)) }
            if wantOffsets { offsets.append(0..<0) }
            var segmentStart = 0
            var i = 0
            while i < n && remaining > 0 {
                if let (length, id) = Self.special(at: i, in: buf) {
                    if segmentStart < i {
                        encodeSegment(buf, segmentStart..<i, whole: false, text: text, remaining: &remaining,
                                      scratch: &scratch, wantOffsets: wantOffsets, ids: &ids, offsets: &offsets)
                    }
                    if remaining > 0 {
                        ids.append(id == Self.mask ? maskID : id)
                        if wantOffsets { offsets.append(i..<(i + length)) }
                        remaining -= 1
                    }
                    i += length
                    segmentStart = i
                } else {
                    i += 1
                }
            }
            if segmentStart < n && remaining > 0 {
                encodeSegment(buf, segmentStart..<n, whole: segmentStart == 0, text: text, remaining: &remaining,
                              scratch: &scratch, wantOffsets: wantOffsets, ids: &ids, offsets: &offsets)
            }
            ids.append(Self.eos)
            if wantOffsets { offsets.append(n..<n) }
        }
    }

    private struct Scratch {
        var graphemes: [UInt32] = []
        var ids: [Int32] = []
        var begins: [Int32] = []
        var ends: [Int32] = []
    }

    private func encodeSegment(
        _ buf: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, whole: Bool, text: String,
        remaining: inout Int, scratch: inout Scratch, wantOffsets: Bool, ids: inout [Int32],
        offsets: inout [Range<Int>]
    ) {
        let segment = UnsafeBufferPointer(rebasing: buf[range])
        var ascii = true
        for byte in segment where byte >= 0x80 {
            ascii = false
            break
        }
        if !ascii {
            // Extended grapheme clusters of this segment alone (Hugging Face normalises each
            // segment between special tokens separately).
            scratch.graphemes.removeAll(keepingCapacity: true)
            let string = whole ? text : String(decoding: segment, as: UTF8.self)
            for character in string {
                scratch.graphemes.append(UInt32(character.utf8.count))
            }
        }
        var capacity = min(remaining, segment.count + 16)
        while true {
            if scratch.ids.count < capacity {
                scratch.ids = [Int32](repeating: 0, count: capacity)
                scratch.begins = scratch.ids
                scratch.ends = scratch.ids
            }
            let count = scratch.ids.withUnsafeMutableBufferPointer { idsOut in
                scratch.begins.withUnsafeMutableBufferPointer { beginsOut in
                    scratch.ends.withUnsafeMutableBufferPointer { endsOut in
                        if ascii {
                            return csp_encode_segment(
                                handle, segment.baseAddress, segment.count, nil, 0, remaining,
                                idsOut.baseAddress, beginsOut.baseAddress, endsOut.baseAddress, idsOut.count)
                        }
                        return scratch.graphemes.withUnsafeBufferPointer { g in
                            csp_encode_segment(
                                handle, segment.baseAddress, segment.count, g.baseAddress, g.count, remaining,
                                idsOut.baseAddress, beginsOut.baseAddress, endsOut.baseAddress, idsOut.count)
                        }
                    }
                }
            }
            if count > scratch.ids.count {
                capacity = count
                continue
            }
            ids.append(contentsOf: scratch.ids[0..<count])
            if wantOffsets {
                let base = range.lowerBound
                for k in 0..<count {
                    offsets.append((base + Int(scratch.begins[k]))..<(base + Int(scratch.ends[k])))
                }
            }
            remaining -= count
            return
        }
    }
}
