import Foundation

/// The sizes of an XLM-RoBERTa encoder, read from the model folder's config.json.
///
/// BAAI/bge-m3: hidden 1024, 24 layers, 16 heads, intermediate 4096, vocab 250002,
/// max positions 8194, layer_norm_eps 1e-5, pad id 1. Nothing here is hard-coded:
/// smaller test models use the same code.
public struct ModelConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var vocabularySize: Int
    public var maxPositions: Int
    public var typeVocabularySize: Int
    public var layerNormEps: Float
    public var padTokenID: Int

    public var headDim: Int { hiddenSize / headCount }
    /// Longest input the position table allows: RoBERTa positions start at pad id + 1.
    public var maxSequenceLength: Int { maxPositions - padTokenID - 1 }

    /// Largest config.json accepted (BAAI/bge-m3's is 0.7 KB).
    static let maxFileBytes = 1 << 20

    /// The largest value of each size we accept: generous for any XLM-R-style encoder
    /// (BGE-M3: 1024, 24, 16, 4096, 250002, 8194, 1), small enough that no product of
    /// them overflows and that a hostile number is refused before it sizes anything.
    static let limits: [(key: String, max: Int)] = [
        ("hidden_size", 16_384), ("num_hidden_layers", 256), ("num_attention_heads", 256),
        ("intermediate_size", 65_536), ("vocab_size", 4_000_000), ("max_position_embeddings", 1 << 20),
        ("type_vocab_size", 1_024)]

    /// Parses config.json; throws `ModelError.invalidConfig` naming the field at fault.
    /// Absent optional fields take Hugging Face's XLMRobertaConfig defaults.
    public static func load(_ path: String) throws -> ModelConfig {
        let bytes = try ModelFiles.read(path, limit: maxFileBytes, missingHint: "every Hugging Face model folder has a config.json")
        return try parse(bytes, path: path)
    }

    /// Parses the bytes of a config.json (`path` names it in errors).
    static func parse(_ bytes: [UInt8], path: String) throws -> ModelConfig {
        func invalid(_ detail: String) -> ModelError { .invalidConfig(path: path, detail: detail) }
        let json: StrictJSON
        do { json = try StrictJSON.parse(bytes) } catch {
            throw invalid("not valid JSON (\(error))")
        }
        guard case .object = json else { throw invalid("not a JSON object") }

        func int(_ key: String, default value: Int? = nil) throws -> Int {
            guard let field = json[key] else {
                if let value { return value }
                throw invalid("\"\(key)\" is missing")
            }
            if let v = field.exactInt { return v }
            // 1024.0 or 1.024e3 are whole numbers too; 1e19, 1e300 or 2.5 are not sizes.
            if let d = field.double, d == d.rounded(), abs(d) <= 0x1p53 { return Int(d) }
            if let d = field.double, d == d.rounded() || !d.isFinite {
                throw invalid("\"\(key)\" = \(describe(field)) is out of range")
            }
            throw invalid("\"\(key)\" must be a whole number, not \(describe(field))")
        }
        func string(_ key: String, default value: String) throws -> String {
            guard let field = json[key] else { return value }
            guard case .string(let s) = field else { throw invalid("\"\(key)\" must be a string, not \(describe(field))") }
            return s
        }
        let act = try string("hidden_act", default: "gelu")
        if act != "gelu" {
            throw invalid("hidden_act \"\(act)\" is not supported (BGE-M3 uses exact \"gelu\")")
        }
        let pos = try string("position_embedding_type", default: "absolute")
        if pos != "absolute" {
            throw invalid("position_embedding_type \"\(pos)\" is not supported")
        }
        // XLMRobertaConfig's default is 1e-12. A value that is not a positive finite number
        // below 1 is an error: layer norm divides by sqrt(var + eps).
        var eps = 1e-12
        if let field = json["layer_norm_eps"] {
            guard let v = field.double, v.isFinite, v > 0, v < 1, Float(v) > 0 else {
                throw invalid("\"layer_norm_eps\" must be a number between 0 and 1 (exclusive), not \(describe(field))")
            }
            eps = v
        }
        let config = ModelConfig(
            hiddenSize: try int("hidden_size"),
            layerCount: try int("num_hidden_layers"),
            headCount: try int("num_attention_heads"),
            intermediateSize: try int("intermediate_size"),
            vocabularySize: try int("vocab_size"),
            maxPositions: try int("max_position_embeddings"),
            typeVocabularySize: try int("type_vocab_size", default: 1),
            layerNormEps: Float(eps),
            padTokenID: try int("pad_token_id", default: 1))
        try config.validate(path: path)
        return config
    }

    /// A JSON value for an error message, cut short.
    private static func describe(_ value: StrictJSON) -> String {
        switch value {
        case .number(let text), .string(let text):
            let shown = text.count > 40 ? text.prefix(40) + "…" : Substring(text)
            if case .string = value { return "\"\(shown)\"" }
            return String(shown)
        default: return value.kind
        }
    }

    func validate(path: String) throws {
        func invalid(_ detail: String) -> ModelError { .invalidConfig(path: path, detail: detail) }
        let values = [hiddenSize, layerCount, headCount, intermediateSize, vocabularySize, maxPositions, typeVocabularySize]
        for ((name, limit), value) in zip(Self.limits, values) where value <= 0 || value > limit {
            throw invalid("\(name) = \(value) is out of range (1…\(limit))")
        }
        if hiddenSize % headCount != 0 {
            throw invalid("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(headCount)")
        }
        if padTokenID < 0 || padTokenID + 2 >= maxPositions {
            throw invalid("pad_token_id \(padTokenID) leaves no positions")
        }
        if !(layerNormEps.isFinite && layerNormEps > 0) {
            throw invalid("layer_norm_eps \(layerNormEps) must be positive and finite")
        }
    }
}
