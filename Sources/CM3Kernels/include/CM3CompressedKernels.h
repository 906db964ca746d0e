// Scoring kernels over compressed ColBERT rows (asymmetric: the query stays float32, the
// passage rows are read in their stored form, never decompressed as a whole):
//
// - int8:   row j = scale[j] · codes[j][0..d) (signed bytes);
// - binary: row j = factor[j] · (±1 per dimension), bit k of byte k/8 set ⇔ +1 (LSB first);
// - PQ:     row j = concatenation over m subspaces of centroid codes[j][s] of subspace s
//           (256 centroids of d/m values each). The query is turned once into a lookup
//           table of every query row · every centroid; a row's score is then m table reads.
//
// Like CM3IndexKernels.h: a portable C version of each kernel plus an AVX-512 version built
// with a per-function target attribute, chosen at run time; the `_isa` variants run a chosen
// level (M3IX_ISA_*) so tests can compare every level against a plain loop.
#ifndef CM3COMPRESSEDKERNELS_H
#define CM3COMPRESSEDKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// MaxSim (mean over query rows of the max over passage rows) of q (nq × d float32) against
/// int8 rows (np × d) with per-row scales.
float m3cx_maxsim_i8(const float *q, size_t nq, const int8_t *codes, const float *scales, size_t np, size_t d);
float m3cx_maxsim_i8_isa(int isa, const float *q, size_t nq, const int8_t *codes, const float *scales,
                         size_t np, size_t d);

/// MaxSim of q (nq × d float32) against sign-bit rows (np × d/8 bytes) with per-row factors.
/// Precondition: d % 8 == 0.
float m3cx_maxsim_bits(const float *q, size_t nq, const uint8_t *bits, const float *factors, size_t np, size_t d);
float m3cx_maxsim_bits_isa(int isa, const float *q, size_t nq, const uint8_t *bits, const float *factors,
                           size_t np, size_t d);

/// Floats in the PQ lookup table of nq query rows over m subspaces: m · 256 · round_up(nq, 16).
size_t m3cx_pq_table_count(size_t nq, size_t m);

/// Fills `table` (m3cx_pq_table_count floats): table[(s·256 + c)·nqp + i] = q_i[s-th slice] ·
/// centroid c of subspace s, zero for the padding rows i ≥ nq. `codebook` is m × 256 × (d/m)
/// floats. Precondition: d % m == 0.
void m3cx_pq_table(const float *q, size_t nq, size_t d, const float *codebook, size_t m, float *table);

/// MaxSim from a lookup table (m3cx_pq_table) against np rows of m one-byte codes.
float m3cx_maxsim_pq(const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np);
float m3cx_maxsim_pq_isa(int isa, const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np);

/// MaxSim of float32 query rows q (nq × d) against np rows of m one-byte codes without a
/// table: rows are decoded a block at a time from `codebook` (m × 256 × d/m floats, centroid
/// c of subspace s at (s·256 + c)·d/m) and scored by the float32 MaxSim. Faster than the
/// table for 2 or 4 values per code. 0 when nq, np or m is 0 or m does not divide d; NaN
/// if scratch memory cannot be had (rows above 8,192 values take the heap).
float m3cx_maxsim_pq_rows(const float *q, size_t nq, size_t d, const float *codebook, size_t m, const uint8_t *codes,
                          size_t np);
float m3cx_maxsim_pq_rows_isa(int isa, const float *q, size_t nq, size_t d, const float *codebook, size_t m,
                              const uint8_t *codes, size_t np);

/// bfloat16 of n floats, rounded to nearest even; finite values beyond bfloat16's range
/// become its largest finite value of their sign.
void m3cx_round_bf16(const float *x, size_t n, uint16_t *out);

/// Whether m3cx_maxsim_pq_rows_bf16 runs on bfloat16 dot-product instructions (AVX512-BF16)
/// here; otherwise it computes the same products in float32.
int m3cx_bf16_is_fast(void);

/// MaxSim of bfloat16 query rows q (nq × d) against np rows of m one-byte codes, decoded from
/// a bfloat16 codebook (m × 256 × d/m values, laid out as m3cx_maxsim_pq_rows's). Every
/// product of two bfloat16 values is exact in float32, so all levels agree up to the order of
/// float32 additions: AVX512-BF16 (vdpbf16ps, 32 multiply-adds an instruction, twice vfmadd's;
/// rows decoded 8 or 16 codes a gather for 2 or 4 values per code), else float32 on the
/// widened values. 0 when nq, np or m is 0 or m does not divide d; NaN if scratch memory
/// cannot be had.
float m3cx_maxsim_pq_rows_bf16(const uint16_t *q, size_t nq, size_t d, const uint16_t *codebook, size_t m,
                               const uint8_t *codes, size_t np);
float m3cx_maxsim_pq_rows_bf16_isa(int isa, const uint16_t *q, size_t nq, size_t d, const uint16_t *codebook,
                                   size_t m, const uint8_t *codes, size_t np);

/// Index of the nearest of k ≤ 256 centroids to x (ds floats) by squared distance, the first
/// on ties. `centroids_t` is the centroids transposed (ds × k); `norms` their squared norms.
/// Dispatched (AVX-512 for k = 256, else portable; the same index either way).
uint32_t m3cx_nearest_centroid(const float *x, size_t ds, const float *centroids_t, const float *norms, size_t k);
uint32_t m3cx_nearest_centroid_isa(int isa, const float *x, size_t ds, const float *centroids_t, const float *norms,
                                   size_t k);

#ifdef __cplusplus
}
#endif

#endif
