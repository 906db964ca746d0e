import M3Model

/// How an index stores each chunk's ColBERT rows (chosen when the index is created, recorded
/// in its settings, see docs/FORMAT.md). Sizes per row for BGE-M3's 1024 dimensions.
public enum ColBERTStorage: Sendable, Hashable, CustomStringConvertible {
    /// IEEE binary16 values (2,048 bytes): the reference.
    case float16
    /// Signed bytes with one float32 scale per row (1,028 bytes): value ≈ scale · byte.
    case int8
    /// One sign bit per value with one float32 factor per row (132 bytes): row ≈ factor · (±1, …).
    case binary
    /// Product quantisation: one byte per `dimensionsPerCode` values, naming one of 256
    /// centroids learnt on the first 4,096 indexed rows (`pq16`: 64 bytes, `pq4`: 256 bytes,
    /// `pq2`: 512 bytes at 1024-d, 192 bytes at 384-d).
    case productQuantized(dimensionsPerCode: Int)

    /// The values per code `pq<n>` accepts, most faithful first.
    public static let productQuantizerSteps = [2, 4, 8, 16, 32, 64]

    /// Parses "f16", "int8", "binary", "pq<n>" (n = dimensions per one-byte code: 2, 4, 8, 16, 32, 64).
    public init?(_ name: String) {
        switch name.lowercased() {
        case "f16", "float16": self = .float16
        case "int8": self = .int8
        case "binary", "bits", "1bit": self = .binary
        case let s where s.hasPrefix("pq"):
            guard let n = Int(s.dropFirst(2)), Self.productQuantizerSteps.contains(n) else { return nil }
            self = .productQuantized(dimensionsPerCode: n)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .float16: return "f16"
        case .int8: return "int8"
        case .binary: return "binary"
        case .productQuantized(let n): return "pq\(n)"
        }
    }

    public static let names = "f16, int8, binary, pq2, pq4, pq8, pq16, pq32, pq64"

    /// Stored bytes per ColBERT row of `dimension` values.
    public func bytesPerRow(dimension d: Int) -> Int {
        switch self {
        case .float16: return 2 * d
        case .int8: return 4 + d
        case .binary: return 4 + d / 8
        case .productQuantized(let n): return d / n
        }
    }

    /// Why this storage cannot hold `dimension`-value rows, or nil.
    public func unsupportedReason(dimension d: Int) -> String? {
        switch self {
        case .float16, .int8: return nil
        case .binary: return d % 8 == 0 ? nil : "binary ColBERT storage needs a dimension divisible by 8 (the model has \(d))"
        case .productQuantized(let n):
            return d % n == 0 ? nil : "\(self) ColBERT storage needs a dimension divisible by \(n) (the model has \(d))"
        }
    }

    /// Product quantisation needs a trained codebook before it can encode a row.
    public var needsCodebook: Bool { if case .productQuantized = self { return true } else { return false } }
}

/// How an index stores each chunk's dense vector.
public enum DenseStorage: String, Sendable, CaseIterable, CustomStringConvertible {
    /// float32 (4,096 bytes for 1024 dimensions).
    case f32
    /// IEEE binary16 (2,048 bytes).
    case f16
    /// Signed bytes with one float32 scale (1,028 bytes).
    case int8

    /// Parses "f32", "f16" or "int8" (any case).
    public init?(_ name: String) {
        self.init(rawValue: name.lowercased())
    }

    public var description: String { rawValue }

    /// Stored bytes per vector of `dimension` values.
    public func bytes(dimension d: Int) -> Int {
        switch self {
        case .f32: return 4 * d
        case .f16: return 2 * d
        case .int8: return 4 + d
        }
    }
}

/// Which ColBERT rows an index keeps (chosen at creation, recorded in its settings).
public enum ColBERTPruning: Sendable, Hashable, CustomStringConvertible {
    /// Every row.
    case none
    /// Drops a row whose cosine with the last kept row is at least `threshold` (a token that
    /// repeats its neighbour's vector adds nothing to MaxSim but its near-duplicate score).
    case nearDuplicates(threshold: Float)

    /// Parses "none" or "near-duplicates[:cos]" (default cos 0.95).
    public init?(_ text: String) {
        let parts = text.lowercased().split(separator: ":", maxSplits: 1).map(String.init)
        switch parts.first {
        case "none", "off": self = .none
        case "near-duplicates", "dedup":
            if parts.count == 1 { self = .nearDuplicates(threshold: 0.95); return }
            guard let t = Float(parts[1]), t > 0, t <= 1 else { return nil }
            self = .nearDuplicates(threshold: t)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .nearDuplicates(let t): return "near-duplicates:\(t)"
        }
    }

    /// The rows kept, in order.
    public func apply(_ m: MultiVector) -> MultiVector {
        guard case .nearDuplicates(let threshold) = self, m.count > 1 else { return m }
        let d = m.dimension
        var kept: [Float] = Array(m.values[0..<d])
        var last = 0
        for r in 1..<m.count {
            var dot: Float = 0, a: Float = 0, b: Float = 0
            for k in 0..<d {
                let x = m.values[r * d + k], y = m.values[last * d + k]
                dot += x * y; a += x * x; b += y * y
            }
            let cos = a > 0 && b > 0 ? dot / (a.squareRoot() * b.squareRoot()) : 0
            if cos >= threshold { continue }
            kept.append(contentsOf: m.values[r * d ..< (r + 1) * d])
            last = r
        }
        return MultiVector(dimension: d, values: kept)
    }
}

