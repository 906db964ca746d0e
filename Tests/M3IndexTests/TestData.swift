#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import M3Index
import M3TestSupport

func normalized(_ v: [Float]) -> [Float] {
    var ss: Double = 0
    for x in v { ss += Double(x) * Double(x) }
    let inv = Float(1 / ss.squareRoot())
    return v.map { $0 * inv }
}

/// Unit vectors shaped like text embeddings: a few topics (cluster centres) in a
/// low-dimensional latent space, mapped into `dimension` by a fixed random linear map, plus
/// isotropic noise. Documents and queries come from the same model with different seeds.
/// (Pure Gaussian noise in 128–1024 dimensions would have no near neighbours at all — every
/// cosine ≈ 0 — which no embedding model produces.)
struct EmbeddingModel {
    let dimension: Int
    let latent: Int
    /// dimension × latent, row-major.
    let map: [Float]
    let centres: [[Float]]
    let spread: Float
    let noise: Float

    init(dimension: Int, latent: Int = 16, topics: Int = 40, spread: Float = 0.7, noise: Float = 0.3, seed: UInt64) {
        var rng = TestRNG(seed: seed)
        self.dimension = dimension
        self.latent = latent
        map = (0..<(dimension * latent)).map { _ in rng.gaussian() }
        centres = (0..<topics).map { _ in (0..<latent).map { _ in rng.gaussian() } }
        self.spread = spread
        self.noise = noise
    }

    func sample(count: Int, seed: UInt64) -> [[Float]] {
        var rng = TestRNG(seed: seed)
        let noiseScale = noise * Float(latent).squareRoot()  // noise norm relative to the signal's
        return (0..<count).map { _ in
            let c = centres[rng.int(0..<centres.count)]
            let z = c.map { $0 + spread * rng.gaussian() }
            var v = [Float](repeating: 0, count: dimension)
            for i in 0..<dimension {
                var s: Float = 0
                for j in 0..<latent { s += map[i * latent + j] * z[j] }
                v[i] = s + noiseScale * rng.gaussian()
            }
            return normalized(v)
        }
    }
}

/// Mean |approx ∩ exact| / k over queries.
func recall(_ approx: [[IndexHit]], _ exact: [[IndexHit]], k: Int) -> Double {
    var hit = 0
    for (a, e) in zip(approx, exact) {
        let truth = Set(e.prefix(k).map(\.id))
        hit += a.prefix(k).filter { truth.contains($0.id) }.count
    }
    return Double(hit) / Double(k * exact.count)
}

/// Monotonic seconds, for the timing lines the tests print.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
