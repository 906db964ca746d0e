// The blocked MaxSim loop shared by every AVX-512 MaxSim kernel (float32, float16, int8 and
// sign-bit rows): 4 query rows × 4 passage rows per block, 16 accumulators, 8 loads per 16
// FMAs, so the loop runs at FMA throughput from L1/L2.
//
// Expanded inside a function compiled for avx512f that has in scope:
//   q (nq × d float32, the query rows), nq, np (passage rows), d, best (nq floats, out);
// and three macros over passage row `row` (0 ≤ row < np) and dimension offset `k`:
//   LOAD16(row, k)  the 16 values row[k ..< k + 16] as a __m512 (k + 16 ≤ d);
//   TAIL16(row, k)  the d − k < 16 values left, zeros beyond d (`tail` = d − k is in scope);
//   SCALE(row)      the factor of row's dot products (1.0f for float rows).
// Rows past the end repeat the last row: a repeated passage row leaves the max unchanged, a
// repeated query row is computed and not stored. Query lanes beyond d are masked to zero,
// so whatever TAIL16 holds there adds nothing.
//
// One definition for all row types: the types differ only in how 16 values are loaded.
#ifndef M3_MAXSIM_BLOCK_H
#define M3_MAXSIM_BLOCK_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// The lane sums of a[r·4 + c] (4 query rows r × 4 passage rows c), each times scale[c],
// maxed over c: a tree of 30 shuffles and 15 adds for all 16 sums (16 separate reductions
// take ~4× the instructions, a tenth of a block's time at d = 1024). `scale` holds
// passage row c's factor in its quarter c (lanes 4c ..< 4c + 4). Lane r of the result is
// query row r's maximum.
__attribute__((target("avx512f"), always_inline))
static inline __m128 m3_max_of_sums16(const __m512 *a, __m512 scale) {
    __m512 w[8], x[4];
    // w[p]: quarters 0-1 fold a[2p]'s halves, quarters 2-3 a[2p+1]'s.
    for (int p = 0; p < 8; p++)
        w[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xEE));
    // x[j]: quarter t holds 4 partial sums of a[4j + t].
    for (int j = 0; j < 4; j++)
        x[j] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], 0xDD));
    // y0 quarter t: two partials of a[t] and two of a[4 + t]; y1: of a[8 + t] and a[12 + t].
    __m512 y0 = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], 0x44), _mm512_shuffle_ps(x[0], x[1], 0xEE));
    __m512 y1 = _mm512_add_ps(_mm512_shuffle_ps(x[2], x[3], 0x44), _mm512_shuffle_ps(x[2], x[3], 0xEE));
    // z lane 4c + r = Σ a[4r + c]: quarter c is passage row c.
    __m512 z = _mm512_mul_ps(_mm512_add_ps(_mm512_shuffle_ps(y0, y1, 0x88), _mm512_shuffle_ps(y0, y1, 0xDD)), scale);
    __m128 m01 = _mm_max_ps(_mm512_castps512_ps128(z), _mm512_extractf32x4_ps(z, 1));
    __m128 m23 = _mm_max_ps(_mm512_extractf32x4_ps(z, 2), _mm512_extractf32x4_ps(z, 3));
    return _mm_max_ps(m01, m23);
}

// Quarter c of the result is row c's factor.
#define M3_QUARTER_SCALES(s0, s1, s2, s3) \
    _mm512_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1, s2, s2, s2, s2, s3, s3, s3, s3)

#endif

#define M3_BLOCKED_MAXSIM(LOAD16, TAIL16, SCALE)                                                \
    for (size_t i = 0; i < nq; i++) best[i] = -INFINITY;                                        \
    size_t full = d & ~(size_t)15, tail = d - full;                                             \
    __mmask16 tm = (__mmask16)((1u << tail) - 1);                                               \
    for (size_t i0 = 0; i0 < nq; i0 += 4) {                                                     \
        const float *q0 = q + (i0 < nq ? i0 : nq - 1) * d;                                      \
        const float *q1 = q + (i0 + 1 < nq ? i0 + 1 : nq - 1) * d;                              \
        const float *q2 = q + (i0 + 2 < nq ? i0 + 2 : nq - 1) * d;                              \
        const float *q3 = q + (i0 + 3 < nq ? i0 + 3 : nq - 1) * d;                              \
        __m128 b = _mm_set1_ps(-INFINITY);                                                      \
        for (size_t j0 = 0; j0 < np; j0 += 4) {                                                 \
            size_t j[4] = {j0, j0 + 1 < np ? j0 + 1 : np - 1, j0 + 2 < np ? j0 + 2 : np - 1,    \
                           j0 + 3 < np ? j0 + 3 : np - 1};                                      \
            __m512 a[16];                                                                       \
            for (int t = 0; t < 16; t++) a[t] = _mm512_setzero_ps();                            \
            for (size_t k = 0; k < full; k += 16) {                                             \
                __m512 x0 = _mm512_loadu_ps(q0 + k), x1 = _mm512_loadu_ps(q1 + k);              \
                __m512 x2 = _mm512_loadu_ps(q2 + k), x3 = _mm512_loadu_ps(q3 + k);              \
                __m512 y0 = LOAD16(j[0], k), y1 = LOAD16(j[1], k);                              \
                __m512 y2 = LOAD16(j[2], k), y3 = LOAD16(j[3], k);                              \
                a[0] += x0 * y0; a[1] += x0 * y1; a[2] += x0 * y2; a[3] += x0 * y3;             \
                a[4] += x1 * y0; a[5] += x1 * y1; a[6] += x1 * y2; a[7] += x1 * y3;             \
                a[8] += x2 * y0; a[9] += x2 * y1; a[10] += x2 * y2; a[11] += x2 * y3;           \
                a[12] += x3 * y0; a[13] += x3 * y1; a[14] += x3 * y2; a[15] += x3 * y3;         \
            }                                                                                   \
            if (tail) {                                                                         \
                __m512 x[4] = {_mm512_maskz_loadu_ps(tm, q0 + full), _mm512_maskz_loadu_ps(tm, q1 + full), \
                               _mm512_maskz_loadu_ps(tm, q2 + full), _mm512_maskz_loadu_ps(tm, q3 + full)}; \
                __m512 y[4] = {TAIL16(j[0], full), TAIL16(j[1], full), TAIL16(j[2], full),      \
                               TAIL16(j[3], full)};                                             \
                for (int r = 0; r < 4; r++)                                                     \
                    for (int c = 0; c < 4; c++) a[r * 4 + c] += x[r] * y[c];                    \
            }                                                                                   \
            b = _mm_max_ps(b, m3_max_of_sums16(a, M3_QUARTER_SCALES(SCALE(j[0]), SCALE(j[1]),    \
                                                                     SCALE(j[2]), SCALE(j[3])))); \
        }                                                                                       \
        float bs[4];                                                                            \
        _mm_storeu_ps(bs, b);                                                                   \
        for (size_t r = 0; r < 4 && i0 + r < nq; r++) best[i0 + r] = bs[r];                    \
    }

#endif
