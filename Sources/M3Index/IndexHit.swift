/// One search result: the caller's id and its similarity (higher is better).
///
/// Results come sorted by `score` descending, ties by `id` ascending.
public struct IndexHit: Hashable, Sendable, CustomStringConvertible {
    public var id: Int64
    public var score: Float

    public init(id: Int64, score: Float) {
        self.id = id
        self.score = score
    }

    public var description: String { "(\(id), \(score))" }

    /// The result order: higher score first, then lower id. `hits.sort(by: IndexHit.ranksBefore)`
    @inline(__always)
    public static func ranksBefore(_ a: IndexHit, _ b: IndexHit) -> Bool {
        a.score != b.score ? a.score > b.score : a.id < b.id
    }
}
