// Portable kernels plus AVX2/AVX-512 versions selected once at run time.
// Numerics follow PyTorch's float32 CPU ops closely enough for 1e-6 relative parity:
// LayerNorm uses a two-pass mean/variance in double, GELU uses libm's erff.
#include "CM3Kernels.h"
#include "half.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define M3_X86 1
#endif

// ---------------------------------------------------------------- dispatch
static int kernel_level = -1;

static int detect_level(void) {
#if M3_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return 1;
#endif
    return 0;
}

// Concurrent first calls may both detect and store the same value: relaxed atomics make
// that a benign race instead of a data race (ThreadSanitizer reported the plain int).
int m3_kernel_level(void) {
    int level = __atomic_load_n(&kernel_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect_level();
        __atomic_store_n(&kernel_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

// Which of OpenBLAS's x86-64 kernel sets this CPU can run (see BLASKernels.swift): 2 Skylake-X
// (AVX-512 F/CD/BW/DQ/VL), 1 Haswell (AVX2 + FMA), 0 neither. (Its Cooper Lake set adds bf16
// routines only; sgemm is Skylake-X's.)
int m3_cpu_blas_class(void) {
#if M3_X86
    __builtin_cpu_init();
    int skx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl");
    if (skx) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

// ---------------------------------------------------------------- layer norm
#if M3_X86
// The reference's math (mean and variance summed in double) on 4 double lanes; the row is
// 1024 floats, so the three passes stay in L1.
__attribute__((target("avx2,fma")))
static void add_layernorm_avx2(float *x, const float *residual, size_t rows, size_t cols,
                               const float *gamma, const float *beta, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        size_t c = 0;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        for (; c + 8 <= cols; c += 8) {
            __m256 v = _mm256_loadu_ps(row + c);
            if (residual) { v = _mm256_add_ps(v, _mm256_loadu_ps(residual + r * cols + c)); _mm256_storeu_ps(row + c, v); }
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        double lanes[4];
        _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
        double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for (; c < cols; c++) {
            if (residual) row[c] += residual[r * cols + c];
            sum += row[c];
        }
        double mean = sum / (double)cols;
        __m256d vm = _mm256_set1_pd(mean), q0 = _mm256_setzero_pd(), q1 = _mm256_setzero_pd();
        for (c = 0; c + 8 <= cols; c += 8) {
            __m256 v = _mm256_loadu_ps(row + c);
            __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
            __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
            q0 = _mm256_fmadd_pd(d0, d0, q0);
            q1 = _mm256_fmadd_pd(d1, d1, q1);
        }
        _mm256_storeu_pd(lanes, _mm256_add_pd(q0, q1));
        double var = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for (; c < cols; c++) { double d = row[c] - mean; var += d * d; }
        var /= (double)cols;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        __m256 vmf = _mm256_set1_ps(m), vinv = _mm256_set1_ps(inv);
        for (c = 0; c + 8 <= cols; c += 8) {
            __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + c), vmf), vinv), _mm256_loadu_ps(gamma + c));
            _mm256_storeu_ps(row + c, _mm256_add_ps(v, _mm256_loadu_ps(beta + c)));
        }
        for (; c < cols; c++) row[c] = (row[c] - m) * inv * gamma[c] + beta[c];
    }
}
#endif

void m3_add_layernorm(float *x, const float *residual, size_t rows, size_t cols,
                      const float *gamma, const float *beta, float eps) {
#if M3_X86
    if (m3_kernel_level() >= 1) { add_layernorm_avx2(x, residual, rows, cols, gamma, beta, eps); return; }
#endif
    m3_add_layernorm_reference(x, residual, rows, cols, gamma, beta, eps);
}

void m3_add_layernorm_reference(float *x, const float *residual, size_t rows, size_t cols,
                                const float *gamma, const float *beta, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        if (residual) {
            const float *res = residual + r * cols;
            for (size_t c = 0; c < cols; c++) row[c] += res[c];
        }
        double sum = 0;
        for (size_t c = 0; c < cols; c++) sum += row[c];
        double mean = sum / (double)cols;
        double var = 0;
        for (size_t c = 0; c < cols; c++) { double d = row[c] - mean; var += d * d; }
        var /= (double)cols;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        for (size_t c = 0; c < cols; c++) row[c] = (row[c] - m) * inv * gamma[c] + beta[c];
    }
}

// ---------------------------------------------------------------- bias, GELU
void m3_add_bias(float *x, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    }
}

void m3_bias_gelu_reference(float *x, const float *bias, size_t rows, size_t cols) {
    const float inv_sqrt2 = 0.70710678118654752440f;
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        for (size_t c = 0; c < cols; c++) {
            float v = row[c] + bias[c];
            row[c] = 0.5f * v * (1.0f + erff(v * inv_sqrt2));
        }
    }
}

// ---------------------------------------------------------------- softmax
void m3_softmax_rows_reference(float *s, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * cols;
        float mx = -INFINITY;
        for (size_t c = 0; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        float sum = 0;
        for (size_t c = 0; c < cols; c++) { float e = expf(row[c] - mx); row[c] = e; sum += e; }
        float inv = 1.0f / sum;
        for (size_t c = 0; c < cols; c++) row[c] *= inv;
    }
}


// ---------------------------------------------------------------- AVX-512 exp, erf
// exp: Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-6
// polynomial for e^r (≈1 ulp, like glibc's expf). erf(v) for GELU: 1 − erfc(|v|) with
// the Numerical Recipes erfc (relative error < 1.2e-7), sign restored; GELU's absolute
// error stays below 1e-7·|v|, far inside float32 parity with PyTorch.
#if M3_X86
__attribute__((target("avx512f")))
static inline __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f")))
static void softmax_rows_avx512(float *s, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * cols;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        size_t c = 0;
        for (; c + 16 <= cols; c += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(row + c));
        float mx = _mm512_reduce_max_ps(vmax);
        for (; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        __m512 vm = _mm512_set1_ps(mx), vsum = _mm512_setzero_ps();
        for (c = 0; c + 16 <= cols; c += 16) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + c), vm));
            _mm512_storeu_ps(row + c, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        if (c < cols) {
            __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + c), vm));
            _mm512_mask_storeu_ps(row + c, m, e);
            vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
        for (c = 0; c + 16 <= cols; c += 16) _mm512_storeu_ps(row + c, _mm512_mul_ps(_mm512_loadu_ps(row + c), inv));
        for (; c < cols; c++) row[c] *= _mm512_cvtss_f32(inv);
    }
}

__attribute__((target("avx512f")))
static inline __m512 gelu512(__m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 z = _mm512_abs_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752440f)));
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(half, z, one));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    __m512 arg = _mm512_sub_ps(p, _mm512_mul_ps(z, z));
    __m512 erfc = _mm512_mul_ps(t, exp512(arg));
    __m512 erfabs = _mm512_sub_ps(one, erfc);
    // erf has v's sign: copy the sign bit of v onto |erf|.
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u));
    __m512 erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erfabs), sign));
    return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf));
}

__attribute__((target("avx512f")))
static void bias_gelu_avx512(float *x, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        size_t c = 0;
        for (; c + 16 <= cols; c += 16)
            _mm512_storeu_ps(row + c, gelu512(_mm512_add_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(bias + c))));
        if (c < cols) {
            __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + c), _mm512_maskz_loadu_ps(m, bias + c));
            _mm512_mask_storeu_ps(row + c, m, gelu512(v));
        }
    }
}
#endif

// ---------------------------------------------------------------- AVX2 exp, erf
// The same polynomials on 8 lanes, for CPUs without AVX-512 (libm's erff costs ~15 ns a
// value: 1.5 M of them, ~25 ms, in every 16-token pass of the full model).
#if M3_X86
#define AVX2_TARGET __attribute__((target("avx2,fma")))

AVX2_TARGET static inline __m256 exp256(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2hi = _mm256_set1_ps(0.693359375f), ln2lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.72283f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2hi, x);
    r = _mm256_fnmadd_ps(n, ln2lo, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // × 2^n by adding n to the exponent field; n ∈ [-126, 128] after the clamp, and
    // 2^128 is split in two factors so the scale itself never overflows.
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

AVX2_TARGET static inline float hmax256(__m256 v) {
    __m128 t = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_max_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
}

AVX2_TARGET static inline float hadd256(__m256 v) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

AVX2_TARGET static inline __m256i tail_mask(size_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_TARGET
static void softmax_rows_avx2(float *s, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * cols;
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        size_t c = 0;
        for (; c + 8 <= cols; c += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + c));
        float mx = hmax256(vmax);
        for (; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        __m256 vm = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
        for (c = 0; c + 8 <= cols; c += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
            _mm256_storeu_ps(row + c, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        if (c < cols) {
            __m256i m = tail_mask(cols - c);
            __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(row + c, m), vm));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
            _mm256_maskstore_ps(row + c, m, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float inv = 1.0f / hadd256(vsum);
        __m256 vinv = _mm256_set1_ps(inv);
        for (c = 0; c + 8 <= cols; c += 8) _mm256_storeu_ps(row + c, _mm256_mul_ps(_mm256_loadu_ps(row + c), vinv));
        for (; c < cols; c++) row[c] *= inv;
    }
}

AVX2_TARGET static inline __m256 gelu256(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_andnot_ps(signbit, _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752440f)));
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, z, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 arg = _mm256_sub_ps(p, _mm256_mul_ps(z, z));
    __m256 erfc = _mm256_mul_ps(t, exp256(arg));
    __m256 erfabs = _mm256_sub_ps(one, erfc);
    // erf has v's sign: copy the sign bit of v onto |erf|.
    __m256 erf = _mm256_or_ps(erfabs, _mm256_and_ps(v, signbit));
    return _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf));
}

AVX2_TARGET
static void bias_gelu_avx2(float *x, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        size_t c = 0;
        for (; c + 8 <= cols; c += 8)
            _mm256_storeu_ps(row + c, gelu256(_mm256_add_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(bias + c))));
        if (c < cols) {
            __m256i m = tail_mask(cols - c);
            __m256 v = _mm256_add_ps(_mm256_maskload_ps(row + c, m), _mm256_maskload_ps(bias + c, m));
            _mm256_maskstore_ps(row + c, m, gelu256(v));
        }
    }
}
#endif

void m3_softmax_rows_reference(float *s, size_t rows, size_t cols);
void m3_bias_gelu_reference(float *x, const float *bias, size_t rows, size_t cols);

void m3_softmax_rows(float *s, size_t rows, size_t cols) {
#if M3_X86
    int level = m3_kernel_level();
    if (level == 2) { softmax_rows_avx512(s, rows, cols); return; }
    if (level == 1) { softmax_rows_avx2(s, rows, cols); return; }
#endif
    m3_softmax_rows_reference(s, rows, cols);
}

void m3_bias_gelu(float *x, const float *bias, size_t rows, size_t cols) {
#if M3_X86
    int level = m3_kernel_level();
    if (level == 2) { bias_gelu_avx512(x, bias, rows, cols); return; }
    if (level == 1) { bias_gelu_avx2(x, bias, rows, cols); return; }
#endif
    m3_bias_gelu_reference(x, bias, rows, cols);
}

// ---------------------------------------------------------------- attention of short sequences
// One (sequence, head) pair by dot products: no BLAS call (whose set-up costs more than a
// 16 × 16 × 64 product) and the scores of one query row at a time.
void m3_attention_head_reference(const float *q, const float *k, const float *v, size_t ld, size_t len,
                                 size_t d, float scale, float *out, float *scores) {
    for (size_t i = 0; i < len; i++) {
        for (size_t j = 0; j < len; j++) {
            float dot = 0;
            for (size_t c = 0; c < d; c++) dot += q[i * ld + c] * k[j * ld + c];
            scores[j] = scale * dot;
        }
        m3_softmax_rows(scores, 1, len);
        for (size_t c = 0; c < d; c++) {
            float acc = 0;
            for (size_t j = 0; j < len; j++) acc += scores[j] * v[j * ld + c];
            out[i * ld + c] = acc;
        }
    }
}

#if M3_X86
__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// The lane sums of a[0..7], in order, by one tree of hadds (9 instructions for what 8
// separate horizontal sums do in ~40).
__attribute__((target("avx2,fma")))
static inline __m256 hsum8x8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    // u0: per 128-bit half, the half's sums of a0..a3; u1 of a4..a7.
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// d a multiple of 8 (BGE-M3: 64). Scores of 8 keys at a time: 8 independent FMA chains
// (one per key) instead of one chain and a horizontal sum per key, which left the FMA
// units waiting on their own latency (~5× slower on a 16-token query).
__attribute__((target("avx2,fma")))
static void attention_head_avx2(const float *q, const float *k, const float *v, size_t ld, size_t len,
                                size_t d, float scale, float *out, float *scores) {
    // The head's key and value rows lie ld floats apart (4 KB in BGE-M3): 16 of them share one
    // L1 set and evict each other on every pass over the keys. Copied side by side first
    // (up to 64 rows of 64, 32 KB on the stack), they stay in L1.
    enum { PACKED = 64 * 64 };
    float packed[2 * PACKED] __attribute__((aligned(32)));
    size_t kvld = ld;
    if (len * d <= PACKED) {
        for (size_t j = 0; j < len; j++) {
            memcpy(packed + j * d, k + j * ld, d * sizeof(float));
            memcpy(packed + PACKED + j * d, v + j * ld, d * sizeof(float));
        }
        k = packed;
        v = packed + PACKED;
        kvld = d;
    }
    for (size_t i = 0; i < len; i++) {
        const float *qi = q + i * ld;
        size_t j0 = 0;
        for (; j0 + 8 <= len; j0 += 8) {
            __m256 acc[8];
            for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
            for (size_t c = 0; c < d; c += 8) {
                __m256 qv = _mm256_loadu_ps(qi + c);
                for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (j0 + t) * kvld + c), acc[t]);
            }
            _mm256_storeu_ps(scores + j0, _mm256_mul_ps(_mm256_set1_ps(scale), hsum8x8(acc)));
        }
        for (size_t j = j0; j < len; j++) {
            const float *kj = k + j * kvld;
            __m256 acc = _mm256_setzero_ps();
            for (size_t c = 0; c < d; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qi + c), _mm256_loadu_ps(kj + c), acc);
            scores[j] = scale * hsum256(acc);
        }
        m3_softmax_rows(scores, 1, len);
        // out_i = Σ_j p_j · v_j, 64 columns (8 accumulators) at a time.
        for (size_t c0 = 0; c0 < d; c0 += 64) {
            size_t w = d - c0 < 64 ? d - c0 : 64;
            __m256 acc[8];
            for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
            for (size_t j = 0; j < len; j++) {
                __m256 p = _mm256_set1_ps(scores[j]);
                const float *vj = v + j * kvld + c0;
                for (size_t t = 0; t < w / 8; t++) acc[t] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8 * t), acc[t]);
            }
            for (size_t t = 0; t < w / 8; t++) _mm256_storeu_ps(out + i * ld + c0 + 8 * t, acc[t]);
        }
    }
}

static int has_avx2_fma = -1;
static int avx2_fma(void) {  // detected once; relaxed atomics as in m3_kernel_level
    int v = __atomic_load_n(&has_avx2_fma, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&has_avx2_fma, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

void m3_attention_head(const float *q, const float *k, const float *v, size_t ld, size_t len,
                       size_t d, float scale, float *out, float *scores) {
#if M3_X86
    if (d % 8 == 0 && avx2_fma()) { attention_head_avx2(q, k, v, ld, len, d, scale, out, scores); return; }
#endif
    m3_attention_head_reference(q, k, v, ld, len, d, scale, out, scores);
}

// ---------------------------------------------------------------- normalise, dot
float m3_dot(const float *a, const float *b, size_t n) {
    float acc = 0;
    for (size_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

void m3_l2_normalize_rows(float *x, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        double ss = 0;
        for (size_t c = 0; c < cols; c++) ss += (double)row[c] * row[c];
        double norm = sqrt(ss);
        float inv = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
        for (size_t c = 0; c < cols; c++) row[c] *= inv;
    }
}

// ---------------------------------------------------------------- conversions

#if M3_X86
__attribute__((target("avx512f")))
static void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = m3_half_bits_to_float(src[i]);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = m3_half_bits_to_float(src[i]);
}
#endif

void m3_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if M3_X86
    int level = m3_kernel_level();
    if (level == 2) { f16_to_f32_avx512(src, dst, n); return; }
    if (level == 1) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = m3_half_bits_to_float(src[i]);
}

void m3_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}
