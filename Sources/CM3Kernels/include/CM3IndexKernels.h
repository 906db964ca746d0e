// Similarity kernels for the indexes (M3Index): the dense dot product HNSW and brute
// force score with, and the float-query · float16-vector dot the ColBERT store scores with.
//
// Each kernel has a portable version plus AVX2+FMA and AVX-512 versions, each compiled
// with a per-function target attribute and chosen once at run time by CPU features, so the
// package builds for baseline x86-64 without flags. The `_isa` variants run one chosen
// version so tests can compare every version this CPU has against a plain loop.
#ifndef CM3INDEXKERNELS_H
#define CM3INDEXKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set levels of the index kernels.
enum {
    M3IX_ISA_PORTABLE = 0,  ///< plain C, any CPU
    M3IX_ISA_AVX2 = 1,      ///< AVX2 + FMA (+ F16C for the float16 kernel)
    M3IX_ISA_AVX512 = 2,    ///< AVX-512F
};

/// The best level this CPU supports (detected once; also the level the dispatched kernels use).
int m3ix_isa_level(void);

/// Σ_i a[i]·b[i] over float32 a (n), b (n). Dispatched to the best level.
float m3ix_dot_f32(const float *a, const float *b, size_t n);

/// Σ_i q[i]·h[i] over float32 q (n) and IEEE binary16 h (n, raw bits). Dispatched.
float m3ix_dot_f32_f16(const float *q, const uint16_t *h, size_t n);

/// The dispatched float32 dot itself (resolved once), for callers that score in a loop: one
/// indirect call per pair instead of three direct ones plus the level check.
typedef float (*m3ix_dot_f32_fn)(const float *a, const float *b, size_t n);
m3ix_dot_f32_fn m3ix_dot_f32_best(void);

/// Starts loading `bytes` bytes at p into the cache (a hint; never faults). The graph search
/// calls it for the next neighbour's vector while it scores the current one.
static inline void m3ix_prefetch(const void *p, size_t bytes) {
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 3);
}

/// The same kernels at a chosen level; a level this CPU lacks falls back to the best
/// supported one below it, so callers can always call these (tests check the level first).
float m3ix_dot_f32_isa(int isa, const float *a, const float *b, size_t n);
float m3ix_dot_f32_f16_isa(int isa, const float *q, const uint16_t *h, size_t n);

/// ColBERT late interaction: (1/nq) Σ_i max_j q_i·p_j over float32 query rows q (nq, d)
/// and passage rows p (np, d), row-major; p as IEEE binary16 bits or float32. 0 when nq or
/// np is 0. The AVX-512 version scores 4×4 row blocks; the others take one dot per pair.
float m3ix_maxsim_f16(const float *q, size_t nq, const uint16_t *p, size_t np, size_t d);
float m3ix_maxsim_f32(const float *q, size_t nq, const float *p, size_t np, size_t d);
float m3ix_maxsim_f16_isa(int isa, const float *q, size_t nq, const uint16_t *p, size_t np, size_t d);
float m3ix_maxsim_f32_isa(int isa, const float *q, size_t nq, const float *p, size_t np, size_t d);

#ifdef __cplusplus
}
#endif
#endif
