// MaxSim over compressed ColBERT rows (see CM3CompressedKernels.h): int8 with per-row
// scales, sign bits with per-row factors, and product-quantisation codes through a
// per-query lookup table. Portable C first, then AVX2 (int8 only) and AVX-512 (per-function
// target attributes), then dispatch. Otherwise AVX2 machines run the portable versions,
// which -O2 vectorises for SSE2.
#include "CM3CompressedKernels.h"
#include "CM3IndexKernels.h"
#include "maxsim_block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define M3CX_X86 1
#endif

static inline int level_for(int isa) {
    int best = m3ix_isa_level();
    return isa < best ? (isa < 0 ? 0 : isa) : best;
}

// Mean of the row maxima, summed in row order.
static float mean_of(const float *best, size_t nq) {
    float total = 0;
    for (size_t i = 0; i < nq; i++) total += best[i];
    return total / (float)nq;
}

// ---------------------------------------------------------------- portable
static float dot_i8(const float *q, const int8_t *c, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k = 0;
    for (; k + 4 <= d; k += 4) {
        s0 += q[k] * (float)c[k];
        s1 += q[k + 1] * (float)c[k + 1];
        s2 += q[k + 2] * (float)c[k + 2];
        s3 += q[k + 3] * (float)c[k + 3];
    }
    for (; k < d; k++) s0 += q[k] * (float)c[k];
    return (s0 + s1) + (s2 + s3);
}

// Σ q[k]·(±1): the sum over set bits twice, minus the sum of all (one pass, no branches).
static float dot_bits(const float *q, const uint8_t *b, size_t d) {
    float set = 0, all = 0;
    for (size_t k = 0; k < d; k++) {
        float bit = (float)((b[k >> 3] >> (k & 7)) & 1);
        set += q[k] * bit;
        all += q[k];
    }
    return 2 * set - all;
}

static void maxsim_i8_portable(const float *q, size_t nq, const int8_t *c, const float *scales, size_t np,
                               size_t d, float *best) {
    for (size_t i = 0; i < nq; i++) {
        float b = -INFINITY;
        for (size_t j = 0; j < np; j++) {
            float s = dot_i8(q + i * d, c + j * d, d) * scales[j];
            if (s > b) b = s;
        }
        best[i] = b;
    }
}

static void maxsim_bits_portable(const float *q, size_t nq, const uint8_t *bits, const float *factors, size_t np,
                                 size_t d, float *best) {
    for (size_t i = 0; i < nq; i++) {
        float b = -INFINITY;
        for (size_t j = 0; j < np; j++) {
            float s = dot_bits(q + i * d, bits + j * (d / 8), d) * factors[j];
            if (s > b) b = s;
        }
        best[i] = b;
    }
}

// Row j's scores for all (padded) query rows are the sum of m table rows, each nqp long and
// contiguous, so the inner loop is a plain vector add over query rows.
static void maxsim_pq_portable(const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np,
                               float *best) {
    size_t nqp = (nq + 15) & ~(size_t)15;
    float stack[256];
    float *acc = nqp <= 256 ? stack : (float *)malloc(nqp * sizeof(float));
    for (size_t i = 0; i < nq; i++) best[i] = -INFINITY;
    for (size_t j = 0; j < np; j++) {
        memset(acc, 0, nqp * sizeof(float));
        const uint8_t *row = codes + j * m;
        for (size_t s = 0; s < m; s++) {
            const float *t = table + ((size_t)s * 256 + row[s]) * nqp;
            for (size_t i = 0; i < nqp; i++) acc[i] += t[i];
        }
        for (size_t i = 0; i < nq; i++)
            if (acc[i] > best[i]) best[i] = acc[i];
    }
    if (acc != stack) free(acc);
}

#if M3CX_X86
// ---------------------------------------------------------------- AVX2 + FMA
// int8 rows (the default ColBERT storage) on AVX2-only CPUs: one vectorised float·int8 dot
// per (query row, passage row) pair, m3ix's rescoring loop (8 values widened per FMA). The
// portable loop, which -O2 only vectorises for SSE2, made MaxSim the top of a server profile.
static void maxsim_i8_avx2(const float *q, size_t nq, const int8_t *c, const float *scales, size_t np, size_t d,
                           float *best) {
    for (size_t i = 0; i < nq; i++) {
        float b = -INFINITY;
        for (size_t j = 0; j < np; j++) {
            float s = m3ix_dot_f32_s8_isa(M3IX_ISA_AVX2, q + i * d, c + j * d, d) * scales[j];
            if (s > b) b = s;
        }
        best[i] = b;
    }
}

// ---------------------------------------------------------------- AVX-512F
// The blocked loop of maxsim_block.h, shared with the float16/float32 kernels; int8 and
// sign-bit rows differ only in how 16 values are loaded and in the per-row SCALE.
__attribute__((target("avx512f")))
static inline __m512 i8x16_to_ps(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

__attribute__((target("avx512f")))
static inline __m512 i8_tail_to_ps(const int8_t *p, size_t n) {
    int8_t buf[16] = {0};
    memcpy(buf, p, n);
    return i8x16_to_ps(buf);
}

__attribute__((target("avx512f")))
static void maxsim_i8_avx512(const float *q, size_t nq, const int8_t *c, const float *scales, size_t np, size_t d,
                             float *best) {
#define LOAD16(row, k) i8x16_to_ps(c + (row) * d + (k))
#define TAIL16(row, k) i8_tail_to_ps(c + (row) * d + (k), tail)
#define SCALE(row) scales[row]
    M3_BLOCKED_MAXSIM(LOAD16, TAIL16, SCALE)
#undef LOAD16
#undef TAIL16
#undef SCALE
}

// 16 sign bits → ±1.0 lanes.
__attribute__((target("avx512f")))
static inline __m512 bits16_to_ps(const uint8_t *p, size_t bytes) {
    uint16_t m = 0;
    memcpy(&m, p, bytes);
    return _mm512_mask_blend_ps((__mmask16)m, _mm512_set1_ps(-1.0f), _mm512_set1_ps(1.0f));
}

__attribute__((target("avx512f")))
static void maxsim_bits_avx512(const float *q, size_t nq, const uint8_t *bits, const float *factors, size_t np,
                               size_t d, float *best) {
    size_t row_bytes = d / 8;
#define LOAD16(row, k) bits16_to_ps(bits + (row) * row_bytes + (k) / 8, 2)
#define TAIL16(row, k) bits16_to_ps(bits + (row) * row_bytes + (k) / 8, tail / 8)
#define SCALE(row) factors[row]
    M3_BLOCKED_MAXSIM(LOAD16, TAIL16, SCALE)
#undef LOAD16
#undef TAIL16
#undef SCALE
}

// Up to 64 query rows (four registers) per pass over the codes.
__attribute__((target("avx512f")))
static void maxsim_pq_avx512(const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np,
                             float *best) {
    size_t nqp = (nq + 15) & ~(size_t)15, blocks = nqp / 16;
    for (size_t b0 = 0; b0 < blocks; b0 += 4) {
        size_t nb = blocks - b0 < 4 ? blocks - b0 : 4;
        __m512 mx[4];
        for (size_t v = 0; v < 4; v++) mx[v] = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < np; j++) {
            const uint8_t *row = codes + j * m;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (size_t s = 0; s < m; s++) {
                const float *t = table + ((size_t)s * 256 + row[s]) * nqp + b0 * 16;
                for (size_t v = 0; v < nb; v++) acc[v] += _mm512_loadu_ps(t + v * 16);
            }
            for (size_t v = 0; v < nb; v++) mx[v] = _mm512_max_ps(mx[v], acc[v]);
        }
        for (size_t v = 0; v < nb; v++) {
            float tmp[16];
            _mm512_storeu_ps(tmp, mx[v]);
            for (size_t l = 0; l < 16; l++) {
                size_t i = (b0 + v) * 16 + l;
                if (i < nq) best[i] = tmp[l];
            }
        }
    }
}
#endif

// ---------------------------------------------------------------- dispatch
#define M3CX_WITH_BEST(nq, BODY)                                                \
    float stack[256];                                                           \
    float *best = (nq) <= 256 ? stack : (float *)malloc((nq) * sizeof(float));  \
    if (!best) return NAN;                                                      \
    BODY;                                                                       \
    float r = mean_of(best, nq);                                                \
    if (best != stack) free(best);                                              \
    return r;

float m3cx_maxsim_i8_isa(int isa, const float *q, size_t nq, const int8_t *codes, const float *scales,
                         size_t np, size_t d) {
    if (nq == 0 || np == 0 || d == 0) return 0;
    M3CX_WITH_BEST(nq, {
#if M3CX_X86
        if (level_for(isa) == M3IX_ISA_AVX512) maxsim_i8_avx512(q, nq, codes, scales, np, d, best);
        else if (level_for(isa) == M3IX_ISA_AVX2) maxsim_i8_avx2(q, nq, codes, scales, np, d, best);
        else
#endif
            maxsim_i8_portable(q, nq, codes, scales, np, d, best);
    })
}

float m3cx_maxsim_bits_isa(int isa, const float *q, size_t nq, const uint8_t *bits, const float *factors,
                           size_t np, size_t d) {
    if (nq == 0 || np == 0 || d == 0) return 0;
    M3CX_WITH_BEST(nq, {
#if M3CX_X86
        if (level_for(isa) == M3IX_ISA_AVX512) maxsim_bits_avx512(q, nq, bits, factors, np, d, best);
        else
#endif
            maxsim_bits_portable(q, nq, bits, factors, np, d, best);
    })
}

float m3cx_maxsim_pq_isa(int isa, const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np) {
    if (nq == 0 || np == 0 || m == 0) return 0;
    M3CX_WITH_BEST(nq, {
#if M3CX_X86
        if (level_for(isa) == M3IX_ISA_AVX512) maxsim_pq_avx512(table, nq, m, codes, np, best);
        else
#endif
            maxsim_pq_portable(table, nq, m, codes, np, best);
    })
}

float m3cx_maxsim_i8(const float *q, size_t nq, const int8_t *codes, const float *scales, size_t np, size_t d) {
    return m3cx_maxsim_i8_isa(M3IX_ISA_AVX512, q, nq, codes, scales, np, d);
}

float m3cx_maxsim_bits(const float *q, size_t nq, const uint8_t *bits, const float *factors, size_t np, size_t d) {
    return m3cx_maxsim_bits_isa(M3IX_ISA_AVX512, q, nq, bits, factors, np, d);
}

float m3cx_maxsim_pq(const float *table, size_t nq, size_t m, const uint8_t *codes, size_t np) {
    return m3cx_maxsim_pq_isa(M3IX_ISA_AVX512, table, nq, m, codes, np);
}

// ---------------------------------------------------------------- PQ rows decoded
// Short subspaces (2 or 4 values per code, the default storage at 384-d and 1024-d) make the
// lookup table m·256 rows of nqp floats (8 MB for pq4 at 1024-d and 32 query rows), read at
// random: slower than float16 MaxSim. Decoding a block of rows (ds floats per code copied from
// the codebook, which stays in L2) and scoring it with the blocked float32 MaxSim costs about
// what float16 rows do, and needs no table.
#define M3CX_PQ_DECODE_FLOATS 8192

static inline void pq_decode_row(const float *codebook, size_t m, size_t ds, const uint8_t *row, float *out) {
    if (ds == 2) {
        for (size_t s = 0; s < m; s++) memcpy(out + 2 * s, codebook + (s * 256 + row[s]) * 2, 2 * sizeof(float));
    } else if (ds == 4) {
        for (size_t s = 0; s < m; s++) memcpy(out + 4 * s, codebook + (s * 256 + row[s]) * 4, 4 * sizeof(float));
    } else {
        for (size_t s = 0; s < m; s++) memcpy(out + ds * s, codebook + (s * 256 + row[s]) * ds, ds * sizeof(float));
    }
}

// Decoded-rows MaxSim in two steps per block of rows: `decode` writes nb rows of m codes into
// `block` (float32 or bfloat16 values, by kind), `score` each query row's max over them into
// `best`. The three kinds (float32, bfloat16 widened to float32, bfloat16) share the loop.
typedef void (*pq_block_decoder)(const void *codebook, size_t m, size_t ds, const uint8_t *codes, size_t nb, void *block);
typedef void (*pq_block_scorer)(int isa, const void *q, size_t nq, const void *block, size_t nb, size_t d, float *best);

static void decode_block_f32(const void *codebook, size_t m, size_t ds, const uint8_t *codes, size_t nb, void *block) {
    for (size_t r = 0; r < nb; r++) pq_decode_row((const float *)codebook, m, ds, codes + r * m, (float *)block + r * m * ds);
}

static void score_block_f32(int isa, const void *q, size_t nq, const void *block, size_t nb, size_t d, float *best) {
    m3ix_maxsim_f32_rows_isa(isa, (const float *)q, nq, (const float *)block, nb, d, best);
}

static float maxsim_decoded_rows(int isa, const void *q, size_t nq, size_t d, const void *codebook, size_t m,
                                 pq_block_decoder decode, pq_block_scorer score, const uint8_t *codes, size_t np) {
    size_t ds = d / m;
    // A block of decoded rows on the stack (32 KB of float32, 16 KB of bfloat16), or one row
    // at a time on the heap when a row is larger than that.
    _Alignas(64) float block_stack[M3CX_PQ_DECODE_FLOATS];
    size_t rows = d <= M3CX_PQ_DECODE_FLOATS ? M3CX_PQ_DECODE_FLOATS / d : 1;
    float *block = d <= M3CX_PQ_DECODE_FLOATS ? block_stack : (float *)malloc(d * sizeof(float));
    // Per-block maxima, then the running maxima: one allocation for both when nq is large.
    float pair_stack[512];
    float *tmp = nq <= 256 ? pair_stack : (float *)malloc(2 * nq * sizeof(float));
    float result = NAN;
    if (block && tmp) {
        float *best = tmp + nq;
        for (size_t i = 0; i < nq; i++) best[i] = -INFINITY;
        for (size_t j0 = 0; j0 < np; j0 += rows) {
            size_t nb = np - j0 < rows ? np - j0 : rows;
            decode(codebook, m, ds, codes + j0 * m, nb, block);
            score(isa, q, nq, block, nb, d, tmp);
            for (size_t i = 0; i < nq; i++)
                if (tmp[i] > best[i]) best[i] = tmp[i];
        }
        result = mean_of(best, nq);
    }
    if (block && block != block_stack) free(block);
    if (tmp && tmp != pair_stack) free(tmp);
    return result;
}

float m3cx_maxsim_pq_rows_isa(int isa, const float *q, size_t nq, size_t d, const float *codebook, size_t m,
                              const uint8_t *codes, size_t np) {
    if (nq == 0 || np == 0 || m == 0 || d == 0 || d % m != 0) return 0;
    return maxsim_decoded_rows(isa, q, nq, d, codebook, m, decode_block_f32, score_block_f32, codes, np);
}

float m3cx_maxsim_pq_rows(const float *q, size_t nq, size_t d, const float *codebook, size_t m, const uint8_t *codes,
                          size_t np) {
    return m3cx_maxsim_pq_rows_isa(M3IX_ISA_AVX512, q, nq, d, codebook, m, codes, np);
}

// ---------------------------------------------------------------- PQ rows decoded, bfloat16
// The same decode-then-MaxSim with bfloat16 query rows and codebook: half the bytes decoded and
// twice the multiply-adds an instruction (vdpbf16ps) of the float32 path. Rounding both sides
// to bfloat16 (8 significant bits) moves a unit-vector dot product by ~1e-3, far below what
// PQ's own quantisation moves it; the products themselves are exact in float32.
void m3cx_round_bf16(const float *x, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        uint32_t r = u + 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even
        // A finite value above bfloat16's largest rounds to it, not to infinity.
        if ((r & 0x7F800000u) == 0x7F800000u && (u & 0x7F800000u) != 0x7F800000u) r = (u & 0x80000000u) | 0x7F7F0000u;
        out[i] = (uint16_t)(r >> 16);
    }
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int has_bf16 = -1;
int m3cx_bf16_is_fast(void) {
#if M3CX_X86
    int v = __atomic_load_n(&has_bf16, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = m3ix_isa_level() >= M3IX_ISA_AVX512 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
        __atomic_store_n(&has_bf16, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

// One row decoded from the bfloat16 codebook into float32 (a bfloat16 is a float32's top
// half: interleaving zeros below it widens it exactly; SSE2, so every x86-64 has it).
static void pq_decode_row_widened(const uint16_t *codebook, size_t m, size_t ds, const uint8_t *c, float *o) {
#if M3CX_X86
    const __m128i zero = _mm_setzero_si128();
    if (ds == 4) {
        for (size_t s = 0; s < m; s++)
            _mm_storeu_si128((__m128i *)(o + 4 * s),
                             _mm_unpacklo_epi16(zero, _mm_loadl_epi64((const __m128i *)(codebook + (s * 256 + c[s]) * 4))));
        return;
    }
    if (ds == 2) {
        for (size_t s = 0; s < m; s++) {
            int32_t pair;
            memcpy(&pair, codebook + (s * 256 + c[s]) * 2, 4);
            _mm_storel_epi64((__m128i *)(o + 2 * s), _mm_unpacklo_epi16(zero, _mm_cvtsi32_si128(pair)));
        }
        return;
    }
#endif
    for (size_t s = 0; s < m; s++) {
        const uint16_t *e = codebook + (s * 256 + c[s]) * ds;
        for (size_t t = 0; t < ds; t++) o[s * ds + t] = bf16_to_f32(e[t]);
    }
}

static void decode_block_widened(const void *codebook, size_t m, size_t ds, const uint8_t *codes, size_t nb, void *block) {
    for (size_t r = 0; r < nb; r++)
        pq_decode_row_widened((const uint16_t *)codebook, m, ds, codes + r * m, (float *)block + r * m * ds);
}

// float32 fallback: the widened bfloat16 values through the float32 MaxSim at `isa`.
static float maxsim_pq_rows_bf16_widened(int isa, const uint16_t *q, size_t nq, size_t d, const uint16_t *codebook,
                                         size_t m, const uint8_t *codes, size_t np) {
    float *qf = malloc(nq * d * sizeof(float));
    if (!qf) return NAN;
    for (size_t i = 0; i < nq * d; i++) qf[i] = bf16_to_f32(q[i]);
    float result = maxsim_decoded_rows(isa, qf, nq, d, codebook, m, decode_block_widened, score_block_f32, codes, np);
    free(qf);
    return result;
}

#if M3CX_X86
#define M3CX_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// nb rows decoded into out (row stride d): a gather of 8 codes (4 values each, one qword) or
// 16 codes (2 values, one dword) at a time; other widths and the tail subspaces by copies.
M3CX_BF16_TARGET
static void pq_decode_rows_bf16_avx512(const uint16_t *codebook, size_t m, size_t ds, const uint8_t *codes,
                                       size_t nb, uint16_t *out) {
    size_t d = m * ds;
    for (size_t r = 0; r < nb; r++) {
        const uint8_t *c = codes + r * m;
        uint16_t *o = out + r * d;
        size_t s = 0;
        if (ds == 4) {
            const __m256i step = _mm256_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792);
            for (; s + 8 <= m; s += 8) {
                __m128i bytes = _mm_loadl_epi64((const __m128i *)(c + s));
                __m256i idx = _mm256_add_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_add_epi32(_mm256_set1_epi32((int)(s * 256)), step));
                _mm512_storeu_si512(o + 4 * s, _mm512_i32gather_epi64(idx, (const long long *)codebook, 8));
            }
        } else if (ds == 2) {
            const __m512i step = _mm512_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560,
                                                   2816, 3072, 3328, 3584, 3840);
            for (; s + 16 <= m; s += 16) {
                __m128i bytes = _mm_loadu_si128((const __m128i *)(c + s));
                __m512i idx = _mm512_add_epi32(_mm512_cvtepu8_epi32(bytes), _mm512_add_epi32(_mm512_set1_epi32((int)(s * 256)), step));
                _mm512_storeu_si512(o + 2 * s, _mm512_i32gather_epi32(idx, (const int *)codebook, 4));
            }
        }
        for (; s < m; s++) memcpy(o + s * ds, codebook + (s * 256 + c[s]) * ds, ds * sizeof(uint16_t));
    }
}

// M3_BLOCKED_MAXSIM's 4 × 4 blocks on bfloat16 pairs: 32 values a step, vdpbf16ps.
M3CX_BF16_TARGET
static void maxsim_bf16_avx512(const uint16_t *q, size_t nq, const uint16_t *p, size_t np, size_t d, float *best) {
    for (size_t i = 0; i < nq; i++) best[i] = -INFINITY;
    size_t full = d & ~(size_t)31, tail = d - full;
    __mmask32 tm = tail ? (__mmask32)((1u << tail) - 1) : 0;
    for (size_t i0 = 0; i0 < nq; i0 += 4) {
        const uint16_t *qr[4];
        for (int r = 0; r < 4; r++) qr[r] = q + (i0 + r < nq ? i0 + r : nq - 1) * d;
        __m128 b = _mm_set1_ps(-INFINITY);
        for (size_t j0 = 0; j0 < np; j0 += 4) {
            const uint16_t *pr[4];
            for (int c = 0; c < 4; c++) pr[c] = p + (j0 + c < np ? j0 + c : np - 1) * d;
            __m512 a[16];
            for (int t = 0; t < 16; t++) a[t] = _mm512_setzero_ps();
            for (size_t k = 0; k < full; k += 32) {
                __m512bh x[4], y[4];
                for (int t = 0; t < 4; t++) {
                    x[t] = (__m512bh)_mm512_loadu_si512(qr[t] + k);
                    y[t] = (__m512bh)_mm512_loadu_si512(pr[t] + k);
                }
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 4; c++) a[r * 4 + c] = _mm512_dpbf16_ps(a[r * 4 + c], x[r], y[c]);
            }
            if (tail) {
                __m512bh x[4], y[4];
                for (int t = 0; t < 4; t++) {
                    x[t] = (__m512bh)_mm512_maskz_loadu_epi16(tm, qr[t] + full);
                    y[t] = (__m512bh)_mm512_maskz_loadu_epi16(tm, pr[t] + full);
                }
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 4; c++) a[r * 4 + c] = _mm512_dpbf16_ps(a[r * 4 + c], x[r], y[c]);
            }
            b = _mm_max_ps(b, m3_max_of_sums16(a, _mm512_set1_ps(1.0f)));
        }
        float out[4];
        _mm_storeu_ps(out, b);
        for (size_t r = 0; r < 4 && i0 + r < nq; r++) best[i0 + r] = out[r];
    }
}

M3CX_BF16_TARGET
static void decode_block_bf16(const void *codebook, size_t m, size_t ds, const uint8_t *codes, size_t nb, void *block) {
    pq_decode_rows_bf16_avx512((const uint16_t *)codebook, m, ds, codes, nb, (uint16_t *)block);
}

M3CX_BF16_TARGET
static void score_block_bf16(int isa, const void *q, size_t nq, const void *block, size_t nb, size_t d, float *best) {
    (void)isa;
    maxsim_bf16_avx512((const uint16_t *)q, nq, (const uint16_t *)block, nb, d, best);
}
#endif

float m3cx_maxsim_pq_rows_bf16_isa(int isa, const uint16_t *q, size_t nq, size_t d, const uint16_t *codebook,
                                   size_t m, const uint8_t *codes, size_t np) {
    if (nq == 0 || np == 0 || m == 0 || d == 0 || d % m != 0) return 0;
#if M3CX_X86
    if (level_for(isa) >= M3IX_ISA_AVX512 && m3cx_bf16_is_fast())
        return maxsim_decoded_rows(isa, q, nq, d, codebook, m, decode_block_bf16, score_block_bf16, codes, np);
#endif
    return maxsim_pq_rows_bf16_widened(level_for(isa), q, nq, d, codebook, m, codes, np);
}

float m3cx_maxsim_pq_rows_bf16(const uint16_t *q, size_t nq, size_t d, const uint16_t *codebook, size_t m,
                               const uint8_t *codes, size_t np) {
    return m3cx_maxsim_pq_rows_bf16_isa(M3IX_ISA_AVX512, q, nq, d, codebook, m, codes, np);
}

// ---------------------------------------------------------------- PQ table and k-means step
size_t m3cx_pq_table_count(size_t nq, size_t m) {
    return m * 256 * ((nq + 15) & ~(size_t)15);
}

// Once per query (m · 256 · d multiply-adds), so a plain loop: the inner loop runs over the
// centroid's values and -O2 vectorises it.
void m3cx_pq_table(const float *q, size_t nq, size_t d, const float *codebook, size_t m, float *table) {
    size_t nqp = (nq + 15) & ~(size_t)15, ds = d / m;
    memset(table, 0, m3cx_pq_table_count(nq, m) * sizeof(float));
    for (size_t s = 0; s < m; s++)
        for (size_t c = 0; c < 256; c++) {
            const float *cent = codebook + (s * 256 + c) * ds;
            float *out = table + (s * 256 + c) * nqp;
            for (size_t i = 0; i < nq; i++) {
                const float *x = q + i * d + s * ds;
                float acc = 0;
                for (size_t k = 0; k < ds; k++) acc += x[k] * cent[k];
                out[i] = acc;
            }
        }
}

// ‖x − c‖² = ‖x‖² − 2x·c + ‖c‖²; ‖x‖² is the same for every c, so the argmin of ‖c‖² − 2x·c.
// With centroids transposed the inner loop runs over centroids (vectorised).
static uint32_t nearest_centroid_portable(const float *x, size_t ds, const float *centroids_t, const float *norms, size_t k) {
    float dist[256];
    if (k > 256) k = 256;
    for (size_t c = 0; c < k; c++) dist[c] = norms[c];
    for (size_t t = 0; t < ds; t++) {
        float w = -2 * x[t];
        const float *row = centroids_t + t * k;
        for (size_t c = 0; c < k; c++) dist[c] += w * row[c];
    }
    uint32_t best = 0;
    for (size_t c = 1; c < k; c++)
        if (dist[c] < dist[best]) best = (uint32_t)c;
    return best;
}

#if M3CX_X86
// The 256 distances in 16 registers, summed as the portable loop sums them (a multiply, then
// an add: no fused rounding), so the same centroid wins, the first of equal minima. Encoding
// a row calls this once per subspace: the top of a PQ index build's profile.
__attribute__((target("avx512f")))
static uint32_t nearest_centroid_avx512(const float *x, size_t ds, const float *centroids_t, const float *norms) {
    __m512 dist[16];
    for (size_t v = 0; v < 16; v++) dist[v] = _mm512_loadu_ps(norms + 16 * v);
    for (size_t t = 0; t < ds; t++) {
        __m512 w = _mm512_set1_ps(-2 * x[t]);
        const float *row = centroids_t + t * 256;
        for (size_t v = 0; v < 16; v++) dist[v] = _mm512_add_ps(dist[v], _mm512_mul_ps(w, _mm512_loadu_ps(row + 16 * v)));
    }
    __m512 m = dist[0];
    __mmask16 nan = 0;
    for (size_t v = 0; v < 16; v++) {
        m = _mm512_min_ps(m, dist[v]);
        nan |= _mm512_cmp_ps_mask(dist[v], dist[v], _CMP_UNORD_Q);
    }
    // NaN distances (non-finite input): the portable loop's order of comparisons decides.
    if (nan) return nearest_centroid_portable(x, ds, centroids_t, norms, 256);
    __m512 b = _mm512_set1_ps(_mm512_reduce_min_ps(m));
    for (size_t v = 0; v < 16; v++) {
        __mmask16 eq = _mm512_cmp_ps_mask(dist[v], b, _CMP_EQ_OQ);
        if (eq) return (uint32_t)(16 * v + (size_t)__builtin_ctz(eq));
    }
    return 0;
}
#endif

uint32_t m3cx_nearest_centroid_isa(int isa, const float *x, size_t ds, const float *centroids_t, const float *norms,
                                   size_t k) {
#if M3CX_X86
    if (k == 256 && level_for(isa) >= M3IX_ISA_AVX512) return nearest_centroid_avx512(x, ds, centroids_t, norms);
#else
    (void)isa;
#endif
    return nearest_centroid_portable(x, ds, centroids_t, norms, k);
}

uint32_t m3cx_nearest_centroid(const float *x, size_t ds, const float *centroids_t, const float *norms, size_t k) {
    return m3cx_nearest_centroid_isa(M3IX_ISA_AVX512, x, ds, centroids_t, norms, k);
}
