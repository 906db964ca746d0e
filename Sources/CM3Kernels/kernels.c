// Portable kernels plus AVX2/AVX-512 versions selected once at run time.
// Numerics follow PyTorch's float32 CPU ops closely enough for 1e-6 relative parity:
// LayerNorm uses a two-pass mean/variance in double, GELU uses libm's erff.
#include "CM3Kernels.h"

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

int m3_kernel_level(void) {
    if (kernel_level < 0) kernel_level = detect_level();
    return kernel_level;
}

// ---------------------------------------------------------------- layer norm
void m3_add_layernorm(float *x, const float *residual, size_t rows, size_t cols,
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

void m3_bias_gelu(float *x, const float *bias, size_t rows, size_t cols) {
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
void m3_softmax_rows(float *s, size_t rows, size_t cols) {
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
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {  // subnormal: renormalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400) == 0) { mant <<= 1; exp--; }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) bits = sign | 0x7f800000 | (mant << 13);
    else bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float f; memcpy(&f, &bits, 4); return f;
}

#if M3_X86
__attribute__((target("avx512f")))
static void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = half_to_float(src[i]);
}
#endif

void m3_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if M3_X86
    int level = m3_kernel_level();
    if (level == 2) { f16_to_f32_avx512(src, dst, n); return; }
    if (level == 1) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

void m3_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}
