// Similarity kernels for M3Index: float·float and float·float16 dot products.
//
// Layout of this file: the portable reference for each kernel, then the AVX2+FMA and
// AVX-512 versions (per-function target attributes; the translation unit itself is built
// for baseline x86-64), then run-time dispatch. The SIMD versions accumulate in several
// registers, so their sums differ from the sequential loop in the last bits; the tests
// allow for that (relative error ~1e-6 for n ≤ 4096).
#include "CM3IndexKernels.h"
#include "half.h"
#include "maxsim_block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define M3IX_X86 1
#endif

// ---------------------------------------------------------------- portable
// a (n), b (n) → Σ a[i]·b[i]. Four accumulators so -O2 vectorises it on any target and
// the dependency chain is short; the order is fixed, so results are reproducible.
static float dot_f32_portable(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}


// q (n) float32, h (n) binary16 → Σ q[i]·float(h[i]).
static float dot_f32_f16_portable(const float *q, const uint16_t *h, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += q[i] * m3_half_bits_to_float(h[i]);
        s1 += q[i + 1] * m3_half_bits_to_float(h[i + 1]);
        s2 += q[i + 2] * m3_half_bits_to_float(h[i + 2]);
        s3 += q[i + 3] * m3_half_bits_to_float(h[i + 3]);
    }
    for (; i < n; i++) s0 += q[i] * m3_half_bits_to_float(h[i]);
    return (s0 + s1) + (s2 + s3);
}

// q (n) float32, c (n) int8 → Σ q[i]·c[i]: the exact score of a float query against an int8
// graph row (times the row's factor), for rescoring candidates without decoding them.
static float dot_f32_s8_portable(const float *q, const int8_t *c, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += q[i] * (float)c[i];
        s1 += q[i + 1] * (float)c[i + 1];
        s2 += q[i + 2] * (float)c[i + 2];
        s3 += q[i + 3] * (float)c[i + 3];
    }
    for (; i < n; i++) s0 += q[i] * (float)c[i];
    return (s0 + s1) + (s2 + s3);
}

#if M3IX_X86
// ---------------------------------------------------------------- AVX2 + FMA
static inline __attribute__((target("avx2,fma"))) float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

// Two 8-wide accumulators (16 floats per step) hide the FMA latency. `acc += x * y` on
// vector types contracts to one FMA (fp-contract=on) and, unlike the _mm256_fmadd_ps
// wrapper, costs no argument copies in -O0 debug builds, which the tests run.
__attribute__((target("avx2,fma")))
static float dot_f32_avx2(const float *a, const float *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += _mm256_loadu_ps(a + i) * _mm256_loadu_ps(b + i);
        acc1 += _mm256_loadu_ps(a + i + 8) * _mm256_loadu_ps(b + i + 8);
    }
    for (; i + 8 <= n; i += 8) acc0 += _mm256_loadu_ps(a + i) * _mm256_loadu_ps(b + i);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// F16C converts 8 halves to 8 floats per instruction.
__attribute__((target("avx2,fma,f16c")))
static float dot_f32_f16_avx2(const float *q, const uint16_t *h, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        __m256 h1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8)));
        acc0 += _mm256_loadu_ps(q + i) * h0;
        acc1 += _mm256_loadu_ps(q + i + 8) * h1;
    }
    for (; i + 8 <= n; i += 8) {
        __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        acc0 += _mm256_loadu_ps(q + i) * h0;
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += q[i] * m3_half_bits_to_float(h[i]);
    return s;
}

// Sign-extends 8 codes to int32, then to float (exact: |c| ≤ 128).
__attribute__((target("avx2,fma")))
static inline __m256 s8x8_to_ps(const int8_t *c) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)c)));
}

__attribute__((target("avx2,fma")))
static float dot_f32_s8_avx2(const float *q, const int8_t *c, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += _mm256_loadu_ps(q + i) * s8x8_to_ps(c + i);
        acc1 += _mm256_loadu_ps(q + i + 8) * s8x8_to_ps(c + i + 8);
    }
    for (; i + 8 <= n; i += 8) acc0 += _mm256_loadu_ps(q + i) * s8x8_to_ps(c + i);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += q[i] * (float)c[i];
    return s;
}

// ---------------------------------------------------------------- AVX-512F
// Two 16-wide accumulators; the tail (< 16) is one masked load, so no scalar loop.
// Four accumulators over 64 floats per step for long vectors: Zen 4 and Intel cores retire two
// FMAs per cycle with a 4-cycle latency, so two chains would leave half the FMA slots idle.
__attribute__((target("avx512f")))
static float dot_f32_avx512(const float *a, const float *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 += _mm512_loadu_ps(a + i) * _mm512_loadu_ps(b + i);
        acc1 += _mm512_loadu_ps(a + i + 16) * _mm512_loadu_ps(b + i + 16);
        acc2 += _mm512_loadu_ps(a + i + 32) * _mm512_loadu_ps(b + i + 32);
        acc3 += _mm512_loadu_ps(a + i + 48) * _mm512_loadu_ps(b + i + 48);
    }
    acc0 += acc2;
    acc1 += acc3;
    for (; i + 32 <= n; i += 32) {
        acc0 += _mm512_loadu_ps(a + i) * _mm512_loadu_ps(b + i);
        acc1 += _mm512_loadu_ps(a + i + 16) * _mm512_loadu_ps(b + i + 16);
    }
    for (; i + 16 <= n; i += 16) acc0 += _mm512_loadu_ps(a + i) * _mm512_loadu_ps(b + i);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        acc1 += _mm512_maskz_loadu_ps(m, a + i) * _mm512_maskz_loadu_ps(m, b + i);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// Four 16-wide chains: an exact scan of int8 rows (`ImageScan`) calls this once per row of
// the index, where the AVX2 loop's two 8-wide chains waited on FMA latency (~4× slower).
__attribute__((target("avx512f")))
static inline __m512 s8x16_to_ps(const int8_t *c) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)c)));
}

__attribute__((target("avx512f")))
static float dot_f32_s8_avx512(const float *q, const int8_t *c, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 += _mm512_loadu_ps(q + i) * s8x16_to_ps(c + i);
        acc1 += _mm512_loadu_ps(q + i + 16) * s8x16_to_ps(c + i + 16);
        acc2 += _mm512_loadu_ps(q + i + 32) * s8x16_to_ps(c + i + 32);
        acc3 += _mm512_loadu_ps(q + i + 48) * s8x16_to_ps(c + i + 48);
    }
    acc0 += acc2;
    acc1 += acc3;
    for (; i + 16 <= n; i += 16) acc0 += _mm512_loadu_ps(q + i) * s8x16_to_ps(c + i);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) s += q[i] * (float)c[i];  // a masked byte load would need AVX512BW
    return s;
}

// AVX-512F includes the 16-wide half→float conversion (vcvtph2ps zmm).
__attribute__((target("avx512f")))
static float dot_f32_f16_avx512(const float *q, const uint16_t *h, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 h0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i)));
        __m512 h1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16)));
        acc0 += _mm512_loadu_ps(q + i) * h0;
        acc1 += _mm512_loadu_ps(q + i + 16) * h1;
    }
    for (; i + 16 <= n; i += 16) {
        __m512 h0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i)));
        acc0 += _mm512_loadu_ps(q + i) * h0;
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) s += q[i] * m3_half_bits_to_float(h[i]);
    return s;
}

// MaxSim of float16 and float32 rows: the blocked loop of maxsim_block.h. float32 tails
// load under a mask; float16 tails go through a zero-padded copy (no AVX-512BW masked
// 16-bit loads).
__attribute__((target("avx512f")))
static inline __m512 half16_to_ps(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

__attribute__((target("avx512f")))
static inline __m512 half_tail_to_ps(const uint16_t *p, size_t n) {
    uint16_t buf[16] = {0};
    memcpy(buf, p, n * sizeof(uint16_t));
    return half16_to_ps(buf);
}

__attribute__((target("avx512f")))
static void maxsim_f16_avx512(const float *q, size_t nq, const uint16_t *p, size_t np, size_t d, float *best) {
#define LOAD16(row, k) half16_to_ps(p + (row) * d + (k))
#define TAIL16(row, k) half_tail_to_ps(p + (row) * d + (k), tail)
#define SCALE(row) 1.0f
    M3_BLOCKED_MAXSIM(LOAD16, TAIL16, SCALE)
#undef LOAD16
#undef TAIL16
#undef SCALE
}

__attribute__((target("avx512f")))
static void maxsim_f32_avx512(const float *q, size_t nq, const float *p, size_t np, size_t d, float *best) {
#define LOAD16(row, k) _mm512_loadu_ps(p + (row) * d + (k))
#define TAIL16(row, k) _mm512_maskz_loadu_ps(tm, p + (row) * d + (k))
#define SCALE(row) 1.0f
    M3_BLOCKED_MAXSIM(LOAD16, TAIL16, SCALE)
#undef LOAD16
#undef TAIL16
#undef SCALE
}
#endif

// ---------------------------------------------------------------- dispatch
// Detected once. Concurrent first calls may both detect; they store the same value, and
// the relaxed atomics keep that benign.
static int isa_cached = -1;

static int detect_isa(void) {
#if M3IX_X86
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
    if (__builtin_cpu_supports("avx512f")) return M3IX_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return M3IX_ISA_AVX2;
#endif
    return M3IX_ISA_PORTABLE;
}

int m3ix_isa_level(void) {
    int level = __atomic_load_n(&isa_cached, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect_isa();
        __atomic_store_n(&isa_cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

static inline int clamp_isa(int isa) {
    int best = m3ix_isa_level();
    return isa < best ? (isa < 0 ? 0 : isa) : best;
}

float m3ix_dot_f32_isa(int isa, const float *a, const float *b, size_t n) {
#if M3IX_X86
    switch (clamp_isa(isa)) {
    case M3IX_ISA_AVX512: return dot_f32_avx512(a, b, n);
    case M3IX_ISA_AVX2: return dot_f32_avx2(a, b, n);
    default: break;
    }
#else
    (void)isa;
#endif
    return dot_f32_portable(a, b, n);
}

float m3ix_dot_f32_f16_isa(int isa, const float *q, const uint16_t *h, size_t n) {
#if M3IX_X86
    switch (clamp_isa(isa)) {
    case M3IX_ISA_AVX512: return dot_f32_f16_avx512(q, h, n);
    case M3IX_ISA_AVX2: return dot_f32_f16_avx2(q, h, n);
    default: break;
    }
#else
    (void)isa;
#endif
    return dot_f32_f16_portable(q, h, n);
}

float m3ix_dot_f32_s8_isa(int isa, const float *q, const int8_t *c, size_t n) {
#if M3IX_X86
    switch (clamp_isa(isa)) {
    case M3IX_ISA_AVX512: return dot_f32_s8_avx512(q, c, n);
    case M3IX_ISA_AVX2: return dot_f32_s8_avx2(q, c, n);
    default: break;
    }
#else
    (void)isa;
#endif
    return dot_f32_s8_portable(q, c, n);
}

float m3ix_dot_f32_s8(const float *q, const int8_t *c, size_t n) {
    return m3ix_dot_f32_s8_isa(M3IX_ISA_AVX512, q, c, n);
}

m3ix_dot_f32_fn m3ix_dot_f32_best(void) {
#if M3IX_X86
    switch (m3ix_isa_level()) {
    case M3IX_ISA_AVX512: return dot_f32_avx512;
    case M3IX_ISA_AVX2: return dot_f32_avx2;
    default: break;
    }
#endif
    return dot_f32_portable;
}

float m3ix_dot_f32(const float *a, const float *b, size_t n) {
    return m3ix_dot_f32_isa(M3IX_ISA_AVX512, a, b, n);
}

float m3ix_dot_f32_f16(const float *q, const uint16_t *h, size_t n) {
    return m3ix_dot_f32_f16_isa(M3IX_ISA_AVX512, q, h, n);
}

// ---------------------------------------------------------------- ColBERT MaxSim
// q (nq, d) float32 rows, p (np, d) rows (binary16 bits or float32): best[i] = max_j q_i·p_j.
// Portable and AVX2 levels take one dispatched dot per pair.
static void maxsim_pairs(int isa, const float *q, size_t nq, const void *p, int p_half, size_t np, size_t d,
                         float *best) {
    for (size_t i = 0; i < nq; i++) {
        float b = -INFINITY;
        for (size_t j = 0; j < np; j++) {
            float s = p_half ? m3ix_dot_f32_f16_isa(isa, q + i * d, (const uint16_t *)p + j * d, d)
                             : m3ix_dot_f32_isa(isa, q + i * d, (const float *)p + j * d, d);
            if (s > b) b = s;
        }
        best[i] = b;
    }
}

// Mean over query rows of the row maxima, summed in row order (as Scores.colbert does).
static float mean_of(const float *best, size_t nq) {
    float total = 0;
    for (size_t i = 0; i < nq; i++) total += best[i];
    return total / (float)nq;
}

float m3ix_maxsim_f16_isa(int isa, const float *q, size_t nq, const uint16_t *p, size_t np, size_t d) {
    if (nq == 0 || np == 0 || d == 0) return 0;
    float stack[256];
    float *best = nq <= 256 ? stack : (float *)malloc(nq * sizeof(float));
#if M3IX_X86
    if (clamp_isa(isa) == M3IX_ISA_AVX512) maxsim_f16_avx512(q, nq, p, np, d, best);
    else
#endif
        maxsim_pairs(isa, q, nq, p, 1, np, d, best);
    float r = mean_of(best, nq);
    if (best != stack) free(best);
    return r;
}

float m3ix_maxsim_f32_isa(int isa, const float *q, size_t nq, const float *p, size_t np, size_t d) {
    if (nq == 0 || np == 0 || d == 0) return 0;
    float stack[256];
    float *best = nq <= 256 ? stack : (float *)malloc(nq * sizeof(float));
#if M3IX_X86
    if (clamp_isa(isa) == M3IX_ISA_AVX512) maxsim_f32_avx512(q, nq, p, np, d, best);
    else
#endif
        maxsim_pairs(isa, q, nq, p, 0, np, d, best);
    float r = mean_of(best, nq);
    if (best != stack) free(best);
    return r;
}

void m3ix_maxsim_f32_rows_isa(int isa, const float *q, size_t nq, const float *p, size_t np, size_t d, float *best) {
    if (nq == 0) return;
    if (np == 0 || d == 0) {
        for (size_t i = 0; i < nq; i++) best[i] = np == 0 ? -INFINITY : 0;
        return;
    }
#if M3IX_X86
    if (clamp_isa(isa) == M3IX_ISA_AVX512) maxsim_f32_avx512(q, nq, p, np, d, best);
    else
#endif
        maxsim_pairs(isa, q, nq, p, 0, np, d, best);
}

float m3ix_maxsim_f16(const float *q, size_t nq, const uint16_t *p, size_t np, size_t d) {
    return m3ix_maxsim_f16_isa(M3IX_ISA_AVX512, q, nq, p, np, d);
}

float m3ix_maxsim_f32(const float *q, size_t nq, const float *p, size_t np, size_t d) {
    return m3ix_maxsim_f32_isa(M3IX_ISA_AVX512, q, nq, p, np, d);
}

// ---------------------------------------------------------------- int8 codes for the graph
// Layouts in CM3IndexKernels.h. Every level computes the same exact integer sum, so scores
// agree bit for bit across levels; only the float scaling at the end rounds.

// One loop serves both operand kinds: `a_signed` selects how a's bytes widen (the row·row
// scores take signed codes on both sides). Callers pass a constant, so it folds away.
static inline int32_t a_byte(const void *a, size_t i, int a_signed) {
    return a_signed ? (int32_t)((const int8_t *)a)[i] : (int32_t)((const uint8_t *)a)[i];
}

static int32_t dot8_portable(const void *a, const int8_t *b, size_t n, int a_signed) {
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += a_byte(a, i, a_signed) * (int32_t)b[i];
    return s;
}

static int32_t dot_u8s8_portable(const uint8_t *a, const int8_t *b, size_t n) { return dot8_portable(a, b, n, 0); }
static int32_t dot_s8s8_portable(const int8_t *a, const int8_t *b, size_t n) { return dot8_portable(a, b, n, 1); }

static inline float q8_factor(const void *row, size_t d) {
    float f;
    memcpy(&f, (const char *)row + m3ix_q8_meta_offset(d), 4);
    return f;
}

static inline int32_t q8_sum(const void *row, size_t d) {
    int32_t s;
    memcpy(&s, (const char *)row + m3ix_q8_meta_offset(d) + 4, 4);
    return s;
}

// Σ (c_q + 128)·c_x − 128·Σ c_x = Σ c_q·c_x, then × scale·factor. The product of the two
// floats is formed the same way for a query made from a row (scale = that row's factor) as
// for two rows, so an insert's search scores equal the heuristic's row·row scores exactly.
static inline float q8_finish(int32_t biased, const void *q, const void *row, size_t d) {
    int64_t exact = (int64_t)biased - 128 * (int64_t)q8_sum(row, d);
    return (float)exact * (q8_factor(q, d) * q8_factor(row, d));
}

static float score_q8_portable(const void *q, const void *row, size_t d) {
    return q8_finish(dot_u8s8_portable((const uint8_t *)q, (const int8_t *)row, d), q, row, d);
}

static float score_q8_rows_portable(const void *a, const void *b, size_t d) {
    int32_t s = dot_s8s8_portable((const int8_t *)a, (const int8_t *)b, d);
    return (float)s * (q8_factor(a, d) * q8_factor(b, d));
}

static float score_f32_portable(const void *q, const void *row, size_t d) {
    return dot_f32_portable((const float *)q, (const float *)row, d);
}

#if M3IX_X86
// AVX2: widen 16 bytes to 16 int16 per operand, vpmaddwd sums adjacent pairs into int32
// (|pair| ≤ 2·255·127, no saturation, unlike vpmaddubsw).
__attribute__((target("avx2")))
static int32_t hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2"), always_inline))
static inline __m256i widen_a_avx2(const void *a, size_t i, int a_signed) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)((const char *)a + i));
    return a_signed ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
}

__attribute__((target("avx2"), always_inline))
static inline int32_t dot8_avx2(const void *a, const int8_t *b, size_t n, int a_signed) {
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i + 16)));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(widen_a_avx2(a, i, a_signed), b0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(widen_a_avx2(a, i + 16, a_signed), b1));
    }
    int32_t s = hsum256_epi32(_mm256_add_epi32(acc0, acc1));
    for (; i < n; i++) s += a_byte(a, i, a_signed) * (int32_t)b[i];
    return s;
}

__attribute__((target("avx2")))
static int32_t dot_u8s8_avx2(const uint8_t *a, const int8_t *b, size_t n) { return dot8_avx2(a, b, n, 0); }

__attribute__((target("avx2")))
static int32_t dot_s8s8_avx2(const int8_t *a, const int8_t *b, size_t n) { return dot8_avx2(a, b, n, 1); }

__attribute__((target("avx2")))
static float score_q8_avx2(const void *q, const void *row, size_t d) {
    return q8_finish(dot_u8s8_avx2((const uint8_t *)q, (const int8_t *)row, d), q, row, d);
}

__attribute__((target("avx2")))
static float score_q8_rows_avx2(const void *a, const void *b, size_t d) {
    int32_t s = dot_s8s8_avx2((const int8_t *)a, (const int8_t *)b, d);
    return (float)s * (q8_factor(a, d) * q8_factor(b, d));
}

__attribute__((target("avx2,fma")))
static float score_f32_avx2(const void *q, const void *row, size_t d) {
    return dot_f32_avx2((const float *)q, (const float *)row, d);
}

// AVX-512BW without VNNI: the AVX2 scheme at 32 bytes per step; the tail is one masked load.
#define M3IX_BW_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

M3IX_BW_TARGET __attribute__((always_inline))
static inline __m512i widen_a_avx512bw(__m256i bytes, int a_signed) {
    return a_signed ? _mm512_cvtepi8_epi16(bytes) : _mm512_cvtepu8_epi16(bytes);
}

M3IX_BW_TARGET __attribute__((always_inline))
static inline int32_t dot8_avx512bw(const void *a, const int8_t *b, size_t n, int a_signed) {
    const char *ab = (const char *)a;
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(widen_a_avx512bw(_mm256_loadu_si256((const __m256i *)(ab + i)), a_signed),
                                                         _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + i)))));
        acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(widen_a_avx512bw(_mm256_loadu_si256((const __m256i *)(ab + i + 32)), a_signed),
                                                         _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + i + 32)))));
    }
    for (; i < n; i += 32) {
        size_t r = n - i < 32 ? n - i : 32;
        __mmask32 m = r == 32 ? 0xffffffffu : (((__mmask32)1 << r) - 1);
        acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(widen_a_avx512bw(_mm256_maskz_loadu_epi8(m, ab + i), a_signed),
                                                         _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, b + i))));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

M3IX_BW_TARGET
static int32_t dot_u8s8_avx512bw(const uint8_t *a, const int8_t *b, size_t n) { return dot8_avx512bw(a, b, n, 0); }

M3IX_BW_TARGET
static int32_t dot_s8s8_avx512bw(const int8_t *a, const int8_t *b, size_t n) { return dot8_avx512bw(a, b, n, 1); }

M3IX_BW_TARGET
static float score_q8_avx512bw(const void *q, const void *row, size_t d) {
    return q8_finish(dot_u8s8_avx512bw((const uint8_t *)q, (const int8_t *)row, d), q, row, d);
}

M3IX_BW_TARGET
static float score_q8_rows_avx512bw(const void *a, const void *b, size_t d) {
    int32_t s = dot_s8s8_avx512bw((const int8_t *)a, (const int8_t *)b, d);
    return (float)s * (q8_factor(a, d) * q8_factor(b, d));
}

__attribute__((target("avx512f")))
static float score_f32_avx512(const void *q, const void *row, size_t d) {
    return dot_f32_avx512((const float *)q, (const float *)row, d);
}

// AVX-512 VNNI: vpdpbusd adds four u8·s8 products per int32 lane, 64 per instruction; four
// accumulators (256 bytes per step) cover its latency. `flip` = 0x80 turns signed codes into
// the unsigned operand (c + 128) on the fly, for row·row scores.
#define M3IX_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

M3IX_VNNI_TARGET
static inline int32_t dot_u8s8_vnni_flip(const uint8_t *a, const int8_t *b, size_t n, char flip) {
    const __m512i f = _mm512_set1_epi8(flip);
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    __m512i acc2 = _mm512_setzero_si512(), acc3 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_xor_si512(_mm512_loadu_si512(a + i), f), _mm512_loadu_si512(b + i));
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_xor_si512(_mm512_loadu_si512(a + i + 64), f), _mm512_loadu_si512(b + i + 64));
        acc2 = _mm512_dpbusd_epi32(acc2, _mm512_xor_si512(_mm512_loadu_si512(a + i + 128), f), _mm512_loadu_si512(b + i + 128));
        acc3 = _mm512_dpbusd_epi32(acc3, _mm512_xor_si512(_mm512_loadu_si512(a + i + 192), f), _mm512_loadu_si512(b + i + 192));
    }
    acc0 = _mm512_add_epi32(acc0, acc2);
    acc1 = _mm512_add_epi32(acc1, acc3);
    for (; i + 64 <= n; i += 64)
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_xor_si512(_mm512_loadu_si512(a + i), f), _mm512_loadu_si512(b + i));
    if (i < n) {
        // Masked-off bytes load as 0 in both operands; the flipped 0x80 meets a 0, adding 0.
        __mmask64 m = ((__mmask64)1 << (n - i)) - 1;
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + i), f),
                                   _mm512_maskz_loadu_epi8(m, b + i));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

M3IX_VNNI_TARGET
static int32_t dot_u8s8_vnni(const uint8_t *a, const int8_t *b, size_t n) { return dot_u8s8_vnni_flip(a, b, n, 0); }

M3IX_VNNI_TARGET
static int32_t dot_s8s8_vnni(const int8_t *a, const int8_t *b, size_t n) {
    int32_t sum_b = 0;
    for (size_t i = 0; i < n; i++) sum_b += b[i];
    return dot_u8s8_vnni_flip((const uint8_t *)a, b, n, (char)0x80) - 128 * sum_b;
}

M3IX_VNNI_TARGET
static float score_q8_vnni(const void *q, const void *row, size_t d) {
    return q8_finish(dot_u8s8_vnni_flip((const uint8_t *)q, (const int8_t *)row, d, 0), q, row, d);
}

// Row a flipped to unsigned is exactly the query made from a, so this equals
// score_q8(query_from_row(a), b) bit for bit.
M3IX_VNNI_TARGET
static float score_q8_rows_vnni(const void *a, const void *b, size_t d) {
    return q8_finish(dot_u8s8_vnni_flip((const uint8_t *)a, (const int8_t *)b, d, (char)0x80), a, b, d);
}
#endif

static int i8_isa_cached = -1;

static int detect_i8_isa(void) {
#if M3IX_X86
    __builtin_cpu_init();
    int bw = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
    if (bw && __builtin_cpu_supports("avx512vnni")) return M3IX_I8_AVX512VNNI;
    if (bw) return M3IX_I8_AVX512BW;
    if (__builtin_cpu_supports("avx2")) return M3IX_I8_AVX2;
#endif
    return M3IX_I8_PORTABLE;
}

int m3ix_i8_isa_level(void) {
    int level = __atomic_load_n(&i8_isa_cached, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect_i8_isa();
        __atomic_store_n(&i8_isa_cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

static inline int clamp_i8_isa(int isa) {
    int best = m3ix_i8_isa_level();
    return isa < best ? (isa < 0 ? 0 : isa) : best;
}

int32_t m3ix_dot_u8s8_isa(int isa, const uint8_t *a, const int8_t *b, size_t n) {
#if M3IX_X86
    switch (clamp_i8_isa(isa)) {
    case M3IX_I8_AVX512VNNI: return dot_u8s8_vnni(a, b, n);
    case M3IX_I8_AVX512BW: return dot_u8s8_avx512bw(a, b, n);
    case M3IX_I8_AVX2: return dot_u8s8_avx2(a, b, n);
    default: break;
    }
#else
    (void)isa;
#endif
    return dot_u8s8_portable(a, b, n);
}

int32_t m3ix_dot_s8s8_isa(int isa, const int8_t *a, const int8_t *b, size_t n) {
#if M3IX_X86
    switch (clamp_i8_isa(isa)) {
    case M3IX_I8_AVX512VNNI: return dot_s8s8_vnni(a, b, n);
    case M3IX_I8_AVX512BW: return dot_s8s8_avx512bw(a, b, n);
    case M3IX_I8_AVX2: return dot_s8s8_avx2(a, b, n);
    default: break;
    }
#else
    (void)isa;
#endif
    return dot_s8s8_portable(a, b, n);
}

static m3ix_score_fn score_q8_at(int isa) {
#if M3IX_X86
    switch (clamp_i8_isa(isa)) {
    case M3IX_I8_AVX512VNNI: return score_q8_vnni;
    case M3IX_I8_AVX512BW: return score_q8_avx512bw;
    case M3IX_I8_AVX2: return score_q8_avx2;
    default: break;
    }
#else
    (void)isa;
#endif
    return score_q8_portable;
}

static m3ix_score_fn score_q8_rows_at(int isa) {
#if M3IX_X86
    switch (clamp_i8_isa(isa)) {
    case M3IX_I8_AVX512VNNI: return score_q8_rows_vnni;
    case M3IX_I8_AVX512BW: return score_q8_rows_avx512bw;
    case M3IX_I8_AVX2: return score_q8_rows_avx2;
    default: break;
    }
#else
    (void)isa;
#endif
    return score_q8_rows_portable;
}

m3ix_score_fn m3ix_score_q8_best(void) { return score_q8_at(M3IX_I8_AVX512VNNI); }
m3ix_score_fn m3ix_score_q8_rows_best(void) { return score_q8_rows_at(M3IX_I8_AVX512VNNI); }

float m3ix_score_q8_isa(int isa, const void *q, const void *row, size_t d) { return score_q8_at(isa)(q, row, d); }
float m3ix_score_q8_rows_isa(int isa, const void *a, const void *b, size_t d) { return score_q8_rows_at(isa)(a, b, d); }

m3ix_score_fn m3ix_score_f32_best(void) {
#if M3IX_X86
    switch (m3ix_isa_level()) {
    case M3IX_ISA_AVX512: return score_f32_avx512;
    case M3IX_ISA_AVX2: return score_f32_avx2;
    default: break;
    }
#endif
    return score_f32_portable;
}

// Quantisation as the store's int8 dense column: scale = max|v|/127, c = round(v/scale)
// (half away from zero, as Swift's `rounded()`), clamped to ±127.
static float q8_quantize(const float *v, size_t d, int8_t *codes) {
    float peak = 0;
    for (size_t i = 0; i < d; i++) peak = fabsf(v[i]) > peak ? fabsf(v[i]) : peak;
    float scale = peak > 0 ? peak / 127 : 0;
    for (size_t i = 0; i < d; i++) {
        float c = scale > 0 ? roundf(v[i] / scale) : 0;
        codes[i] = (int8_t)(c > 127 ? 127 : (c < -127 ? -127 : c));
    }
    return scale;
}

int m3ix_q8_finish_row(void *row, size_t d) {
    const int8_t *c = (const int8_t *)row;
    int64_t sq = 0;
    int32_t sum = 0;
    for (size_t i = 0; i < d; i++) {
        sq += (int64_t)c[i] * c[i];
        sum += c[i];
    }
    float factor = sq > 0 ? (float)(1.0 / sqrt((double)sq)) : 0;
    float residual = 0;
    char *meta = (char *)row + m3ix_q8_meta_offset(d);
    memcpy(meta, &factor, 4);
    memcpy(meta + 4, &sum, 4);
    memcpy(meta + 8, &residual, 4);
    return sq > 0 ? 0 : -1;
}

int m3ix_q8_encode_row(const float *v, size_t d, void *row) {
    memset(row, 0, m3ix_q8_row_bytes(d));
    q8_quantize(v, d, (int8_t *)row);
    if (m3ix_q8_finish_row(row, d) != 0) return -1;
    const int8_t *c = (const int8_t *)row;
    double f = q8_factor(row, d), r2 = 0;
    for (size_t i = 0; i < d; i++) {
        double e = (double)v[i] - f * c[i];
        r2 += e * e;
    }
    float residual = (float)sqrt(r2);
    memcpy((char *)row + m3ix_q8_meta_offset(d) + 8, &residual, 4);
    return 0;
}

float m3ix_q8_encode_query(const float *q, size_t d, void *out) {
    memset(out, 0, m3ix_q8_row_bytes(d));
    int8_t *c = (int8_t *)out;
    float scale = q8_quantize(q, d, c);
    double e2 = 0;
    for (size_t i = 0; i < d; i++) {
        double e = (double)q[i] - (double)scale * c[i];
        e2 += e * e;
        ((uint8_t *)out)[i] = (uint8_t)(c[i] + 128);
    }
    memcpy((char *)out + m3ix_q8_meta_offset(d), &scale, 4);
    return (float)sqrt(e2);
}

void m3ix_q8_query_from_row(const void *row, size_t d, void *out) {
    memset(out, 0, m3ix_q8_row_bytes(d));
    const int8_t *c = (const int8_t *)row;
    for (size_t i = 0; i < d; i++) ((uint8_t *)out)[i] = (uint8_t)(c[i] + 128);
    float factor = q8_factor(row, d);
    memcpy((char *)out + m3ix_q8_meta_offset(d), &factor, 4);
}
