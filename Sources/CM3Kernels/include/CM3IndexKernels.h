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

/// Σ_i q[i]·c[i] over float32 q (n) and int8 c (n): a float query against int8 codes, as
/// exact as a float32 dot (rescoring int8 graph candidates). Dispatched (AVX2 or portable).
float m3ix_dot_f32_s8(const float *q, const int8_t *c, size_t n);

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
float m3ix_dot_f32_s8_isa(int isa, const float *q, const int8_t *c, size_t n);

/// ColBERT late interaction: (1/nq) Σ_i max_j q_i·p_j over float32 query rows q (nq, d)
/// and passage rows p (np, d), row-major; p as IEEE binary16 bits or float32. 0 when nq or
/// np is 0. The AVX-512 version scores 4×4 row blocks; the others take one dot per pair.
float m3ix_maxsim_f16(const float *q, size_t nq, const uint16_t *p, size_t np, size_t d);
float m3ix_maxsim_f32(const float *q, size_t nq, const float *p, size_t np, size_t d);
float m3ix_maxsim_f16_isa(int isa, const float *q, size_t nq, const uint16_t *p, size_t np, size_t d);
float m3ix_maxsim_f32_isa(int isa, const float *q, size_t nq, const float *p, size_t np, size_t d);
/// The row maxima themselves: best[i] = max_j q_i·p_j over float32 rows (−∞ when np is 0),
/// for callers that score passage rows block by block (PQ rows decoded a block at a time).
void m3ix_maxsim_f32_rows_isa(int isa, const float *q, size_t nq, const float *p, size_t np, size_t d, float *best);


// ---------------------------------------------------------------- int8 codes for the graph
// The compact HNSW graph keeps each vector as int8 codes and scores with integer dot
// products (AVX-512 VNNI `vpdpbusd`: 64 byte products per instruction).
//
// Row layout (m3ix_q8_row_bytes(d) bytes): d signed codes c (|c| ≤ 127, scale = max|v|/127,
// c = round(v/scale) as the store's int8 dense column), then at m3ix_q8_meta_offset(d):
//   float factor = 1/‖c‖ (x̂ = factor·c is the unit vector the graph ranks with),
//   int32 sum = Σ c (for the unsigned-operand correction below),
//   float residual = ‖x − x̂‖ for the float vector x the row came from (0 if unknown).
// Query layout (m3ix_q8_row_bytes(d) bytes): d codes biased to unsigned (c + 128, 1…255),
// then at the same offset float scale (q̂ = scale·c).
// vpdpbusd multiplies unsigned by signed bytes, so Σ (c_q + 128)·c_x = Σ c_q·c_x + 128·Σ c_x:
// the row's stored sum removes the bias exactly. Products are exact in int32 for d ≤ 65536.

/// Byte offset of a row's (or query's) float/int fields: d rounded up to 4.
static inline size_t m3ix_q8_meta_offset(size_t d) { return (d + 3) & ~(size_t)3; }
/// Bytes of one row or query: codes + 12 bytes of fields, rounded up to 64 so rows in an
/// array start on cache lines.
static inline size_t m3ix_q8_row_bytes(size_t d) { return (m3ix_q8_meta_offset(d) + 12 + 63) & ~(size_t)63; }

/// Instruction-set levels of the int8 kernels (separate from the float levels above).
enum {
    M3IX_I8_PORTABLE = 0,   ///< plain C
    M3IX_I8_AVX2 = 1,       ///< AVX2: widen to int16, vpmaddwd
    M3IX_I8_AVX512BW = 2,   ///< AVX-512BW: the same, 32 bytes per step
    M3IX_I8_AVX512VNNI = 3, ///< AVX-512 VNNI: vpdpbusd, 64 bytes per instruction
};
int m3ix_i8_isa_level(void);

/// Σ_i a[i]·b[i] over unsigned a (n) and signed b (n), exact in int32 (n ≤ 65536), at a
/// chosen level (a level this CPU lacks falls back to the best one below it).
int32_t m3ix_dot_u8s8_isa(int isa, const uint8_t *a, const int8_t *b, size_t n);
/// Σ_i a[i]·b[i] over signed a, b (n), exact, at a chosen level.
int32_t m3ix_dot_s8s8_isa(int isa, const int8_t *a, const int8_t *b, size_t n);

/// Encodes float v (d) as a row (layout above) into `row` (m3ix_q8_row_bytes(d) bytes).
/// Returns 0, or −1 if v is all zeros (no direction to keep; `row` is left zeroed).
int m3ix_q8_encode_row(const float *v, size_t d, void *row);
/// Fills a row's fields from its codes (already in place): factor, sum, residual 0.
/// Returns −1 if the codes are all zero.
int m3ix_q8_finish_row(void *row, size_t d);
/// Encodes float query q (d) into `out` (layout above). Returns ‖q − q̂‖, the query's
/// quantisation error (for bounds on the approximate scores).
float m3ix_q8_encode_query(const float *q, size_t d, void *out);
/// Turns a row into a query (biased codes, scale = factor), so inserts search with it.
void m3ix_q8_query_from_row(const void *row, size_t d, void *out);

/// Score functions the graph calls through one pointer: (query or row, row, d) → float.
typedef float (*m3ix_score_fn)(const void *q, const void *row, size_t d);
/// float32 query · float32 row (the dot of m3ix_dot_f32_best).
m3ix_score_fn m3ix_score_f32_best(void);
/// int8 query · int8 row: q̂·x̂ = scale·factor·Σ c_q·c_x (dispatched).
m3ix_score_fn m3ix_score_q8_best(void);
/// int8 row · int8 row: x̂_a·x̂_b (dispatched).
m3ix_score_fn m3ix_score_q8_rows_best(void);
/// The same at a chosen level (tests).
float m3ix_score_q8_isa(int isa, const void *q, const void *row, size_t d);
float m3ix_score_q8_rows_isa(int isa, const void *a, const void *b, size_t d);

#ifdef __cplusplus
}
#endif
#endif
