/// Everything that can go wrong while building, searching or loading an index.
///
/// Each case says which structure and which item; `description` says what happened and
/// what to do about it. Loading never traps on bad bytes: every inconsistency in stored
/// data surfaces as `.corrupt`.
public enum IndexError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A vector has a different length than the index was created with.
    case dimensionMismatch(expected: Int, actual: Int)
    /// A vector holds NaN or infinity at `position`.
    case nonFiniteValue(position: Int)
    /// An HNSW vector is not L2-normalised (inner-product HNSW needs unit vectors).
    case notNormalized(norm: Float)
    /// The id is already in the index (live).
    case duplicateID(Int64)
    /// A sparse vector names the same token twice.
    case duplicateToken(Int32)
    /// A sparse weight is negative, NaN or infinite (BGE-M3 weights are ReLU outputs, ≥ 0).
    case invalidWeight(token: Int32, weight: Float)
    /// A construction or search parameter is out of range.
    case invalidParameter(name: String, value: Int, allowed: String)
    /// The index has no room for more items (slots are 32-bit).
    case capacityExceeded(limit: Int)
    /// Stored bytes are inconsistent; `what` names the structure and item ("HNSW node slot 17").
    case corrupt(what: String, detail: String)
    /// `checkIntegrity()` found a broken invariant in memory.
    case integrityViolation(String)

    public var description: String {
        switch self {
        case .dimensionMismatch(let expected, let actual):
            return "Vector has \(actual) dimensions; this index holds \(expected)-d vectors. "
                + "Encode with the model the index was built with."
        case .nonFiniteValue(let position):
            return "Vector has a NaN or infinite value at position \(position); check the encoder output."
        case .notNormalized(let norm):
            return "Vector has L2 norm \(norm); the inner-product HNSW index needs unit vectors. "
                + "Normalise it (BGE-M3 dense output is already normalised)."
        case .duplicateID(let id):
            return "Id \(id) is already in the index; remove it before adding it again."
        case .duplicateToken(let token):
            return "Sparse vector lists token \(token) more than once; merge its weights first."
        case .invalidWeight(let token, let weight):
            return "Sparse weight \(weight) for token \(token) is not a finite non-negative number."
        case .invalidParameter(let name, let value, let allowed):
            return "Parameter \(name) = \(value) is out of range (allowed: \(allowed))."
        case .capacityExceeded(let limit):
            return "The index is full (\(limit) slots); compact it or split the collection."
        case .corrupt(let what, let detail):
            return "Corrupt \(what): \(detail). The stored index is damaged; rebuild it from the documents."
        case .integrityViolation(let detail):
            return "Index integrity check failed: \(detail). compact() relinks unreachable nodes; "
                + "anything else is a bug in M3Index: rebuild the index from its vectors and report it."
        }
    }
}
