// int8 linear layer: dynamic per-row u8 activations × per-column int8 weights, int32 sums.
//
// Math, for output (m, j):   x[m,k] ≈ sx[m]·(qx[m,k] − zx[m]),   W[j,k] ≈ sw[j]·qw[j,k]
//   y[m,j] = Σ_k x·W + b[j] ≈ sx[m]·sw[j]·(Σ_k qx·qw − zx[m]·Σ_k qw[j,k]) + b[j]
// Σ_k qx·qw is exact in int32 (|qx·qw| ≤ 255·127, k ≤ 65 000 stays below 2³¹), and the
// column sums Σ_k qw are computed once at pack time.
//
// Packed W: panels of NR = 64 columns; panel p holds (k4, 64, 4) int8 — for each group of
// 4 consecutive k, 64 columns × 4 bytes, so one 64-byte load is 16 columns × 4 k, the
// dword layout vpdpbusd multiplies against a broadcast dword (4 u8 of one x row).
// Columns past n and k past the real k are zero, so they add nothing.
#include "CM3LowPrecision.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define M3_X86 1
#endif

enum { I8_NR = 64 };  // = VNNI_NR (vnni_panels.h)

/// Round to nearest even for |v| < 2²²: adding 1.5·2²³ leaves no fraction bits. Unlike
/// nearbyintf it vectorises with baseline SSE2 (no roundps), which keeps packing 300 M
/// weights at load well under a second.
static inline float round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

struct m3_i8_weights {
    size_t n, k, k4, panels;
    int8_t *packed;   // (panels, k4, 64, 4)
    float *scale;     // (panels·64), 0 past n
    int32_t *colsum;  // (panels·64), Σ_k qw
    int borrowed;     // m3_i8_view: the arrays belong to the caller (a mapped cache file)
};

// ---------------------------------------------------------------- CPU features
int m3_cpu_has_avx512_vnni(void) {
#if M3_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

int m3_cpu_has_avx512_bf16(void) {
#if M3_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int m3_cpu_has_avx512_fp16(void) {
#if M3_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512fp16");
#else
    return 0;
#endif
}

static int has_vnni = -1;
static int vnni(void) {  // detected once; relaxed atomics as in m3_kernel_level
    int v = __atomic_load_n(&has_vnni, __ATOMIC_RELAXED);
    if (v < 0) { v = m3_cpu_has_avx512_vnni(); __atomic_store_n(&has_vnni, v, __ATOMIC_RELAXED); }
    return v;
}

// ---------------------------------------------------------------- packing
size_t m3_i8_row_stride(size_t k) { return (k + 3) & ~(size_t)3; }

m3_i8_weights *m3_i8_pack(const float *w, size_t n, size_t k) {
    m3_i8_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k4 = (k + 3) / 4; p->panels = (n + I8_NR - 1) / I8_NR;
    size_t cols = p->panels * I8_NR;
    p->packed = aligned_alloc(64, p->panels * p->k4 * I8_NR * 4 + 64);
    p->scale = aligned_alloc(64, cols * sizeof(float) + 64);
    p->colsum = aligned_alloc(64, cols * sizeof(int32_t) + 64);
    if (!p->packed || !p->scale || !p->colsum) { m3_i8_free(p); return NULL; }
    memset(p->packed, 0, p->panels * p->k4 * I8_NR * 4);
    memset(p->scale, 0, cols * sizeof(float));
    memset(p->colsum, 0, cols * sizeof(int32_t));
    for (size_t j = 0; j < n; j++) {
        const float *row = w + j * k;
        float amax = 0;
        for (size_t c = 0; c < k; c++) amax = fmaxf(amax, fabsf(row[c]));
        float s = amax > 0 ? amax / 127.0f : 1.0f;
        float inv = 1.0f / s;
        int8_t *panel = p->packed + (j / I8_NR) * p->k4 * I8_NR * 4;
        size_t col = j % I8_NR;
        int32_t sum = 0;
        for (size_t c = 0; c < k; c++) {
            int32_t q = (int32_t)fmaxf(-127.0f, fminf(127.0f, round_even(row[c] * inv)));
            panel[(c / 4) * I8_NR * 4 + col * 4 + c % 4] = (int8_t)q;
            sum += q;
        }
        p->scale[j] = s;
        p->colsum[j] = sum;
    }
    return p;
}

void m3_i8_free(m3_i8_weights *w) {
    if (!w) return;
    if (!w->borrowed) { free(w->packed); free(w->scale); free(w->colsum); }
    free(w);
}

// ---------------------------------------------------------------- cached packings
// The three arrays of a packing, written out by the caller and later used in place from a
// memory map (Sources/M3Model/PackedWeightsCache.swift).
uint32_t m3_i8_layout_tag(void) { return (uint32_t)I8_NR << 8 | 4; }

int m3_i8_layout(size_t n, size_t k, size_t *packed_bytes, size_t *scale_bytes, size_t *colsum_bytes) {
    size_t panels = n / I8_NR + (n % I8_NR != 0), k4 = k / 4 + (k % 4 != 0), cols, bytes;
    if (__builtin_mul_overflow(panels, (size_t)I8_NR, &cols)
        || __builtin_mul_overflow(cols, k4 * 4, &bytes) || k4 * 4 < k
        || cols > SIZE_MAX / sizeof(float)) return 0;
    *packed_bytes = bytes;
    *scale_bytes = cols * sizeof(float);
    *colsum_bytes = cols * sizeof(int32_t);
    return 1;
}

void m3_i8_parts(const m3_i8_weights *w, const void **packed, const void **scale, const void **colsum) {
    *packed = w->packed; *scale = w->scale; *colsum = w->colsum;
}

m3_i8_weights *m3_i8_view(size_t n, size_t k, const void *packed, const void *scale, const void *colsum) {
    size_t a, b, c;
    if (!m3_i8_layout(n, k, &a, &b, &c)) return NULL;
    // The kernels use aligned 64-byte loads of the panels.
    if (((uintptr_t)packed | (uintptr_t)scale | (uintptr_t)colsum) & 63) return NULL;
    m3_i8_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k4 = (k + 3) / 4; p->panels = (n + I8_NR - 1) / I8_NR;
    p->packed = (int8_t *)packed; p->scale = (float *)scale; p->colsum = (int32_t *)colsum;
    p->borrowed = 1;
    return p;
}

size_t m3_i8_panels(const m3_i8_weights *w) { return w->panels; }
size_t m3_i8_bytes(const m3_i8_weights *w) { return w->panels * I8_NR * (w->k4 * 4 + 8); }
float m3_i8_weight_scale(const m3_i8_weights *w, size_t j) { return w->scale[j]; }

// ---------------------------------------------------------------- activations
static void row_params(float mn, float mx, int asymmetric, float *scale, int32_t *zero) {
    if (asymmetric) {
        mn = fminf(mn, 0); mx = fmaxf(mx, 0);
        float s = (mx - mn) / 255.0f;
        if (!(s > 0)) { *scale = 1; *zero = 0; return; }
        float z = nearbyintf(-mn / s);
        *scale = s;
        *zero = (int32_t)fmaxf(0, fminf(255, z));
    } else {
        float amax = fmaxf(fabsf(mn), fabsf(mx));
        *scale = amax > 0 ? amax / 127.0f : 1.0f;
        *zero = 128;
    }
}

static void quantize_rows_portable(const float *x, size_t rows, size_t k, size_t ldx,
                                   uint8_t *q, size_t ldq, float *scale, int32_t *zero, int asymmetric) {
    size_t stride = m3_i8_row_stride(k);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        uint8_t *qr = q + r * ldq;
        float mn = INFINITY, mx = -INFINITY;
        for (size_t c = 0; c < k; c++) { mn = fminf(mn, xr[c]); mx = fmaxf(mx, xr[c]); }
        if (k == 0) { mn = mx = 0; }
        row_params(mn, mx, asymmetric, &scale[r], &zero[r]);
        float inv = 1.0f / scale[r];
        for (size_t c = 0; c < k; c++) {
            float v = round_even(fmaxf(-1e6f, fminf(1e6f, xr[c] * inv))) + (float)zero[r];
            qr[c] = (uint8_t)fmaxf(0, fminf(255, v));
        }
        for (size_t c = k; c < stride; c++) qr[c] = 0;
    }
}

#if M3_X86
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_rows_avx512(const float *x, size_t rows, size_t k, size_t ldx,
                                 uint8_t *q, size_t ldq, float *scale, int32_t *zero, int asymmetric) {
    size_t stride = m3_i8_row_stride(k);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        uint8_t *qr = q + r * ldq;
        __m512 vmn = _mm512_set1_ps(INFINITY), vmx = _mm512_set1_ps(-INFINITY);
        size_t c = 0;
        for (; c + 16 <= k; c += 16) {
            __m512 v = _mm512_loadu_ps(xr + c);
            vmn = _mm512_min_ps(vmn, v); vmx = _mm512_max_ps(vmx, v);
        }
        float mn = _mm512_reduce_min_ps(vmn), mx = _mm512_reduce_max_ps(vmx);
        for (size_t t = c; t < k; t++) { mn = fminf(mn, xr[t]); mx = fmaxf(mx, xr[t]); }
        if (k == 0) { mn = mx = 0; }
        row_params(mn, mx, asymmetric, &scale[r], &zero[r]);
        __m512 inv = _mm512_set1_ps(1.0f / scale[r]);
        __m512i z = _mm512_set1_epi32(zero[r]), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
        for (c = 0; c < k; c += 16) {
            __mmask16 m = k - c >= 16 ? 0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, xr + c);
            // cvtps rounds to nearest even (MXCSR default), like round_even above.
            __m512i iv = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), z);
            iv = _mm512_min_epi32(_mm512_max_epi32(iv, lo), hi);
            _mm_mask_storeu_epi8(qr + c, m, _mm512_cvtepi32_epi8(iv));
        }
        for (c = k; c < stride; c++) qr[c] = 0;
    }
}
#endif

void m3_i8_quantize_rows(const float *x, size_t rows, size_t k, size_t ldx,
                         uint8_t *q, size_t ldq, float *scale, int32_t *zero, int asymmetric) {
#if M3_X86
    if (vnni()) { quantize_rows_avx512(x, rows, k, ldx, q, ldq, scale, zero, asymmetric); return; }
#endif
    quantize_rows_portable(x, rows, k, ldx, q, ldq, scale, zero, asymmetric);
}

// ---------------------------------------------------------------- gemm, portable
static void i8_gemm_portable(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                             const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                             size_t panel_begin, size_t panel_end) {
    size_t j0 = panel_begin * I8_NR, j1 = panel_end * I8_NR < w->n ? panel_end * I8_NR : w->n;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *qr = q + r * ldq;
        for (size_t j = j0; j < j1; j++) {
            const int8_t *panel = w->packed + (j / I8_NR) * w->k4 * I8_NR * 4;
            size_t col = j % I8_NR;
            int32_t acc = 0;
            for (size_t c = 0; c < w->k; c++)
                acc += (int32_t)qr[c] * panel[(c / 4) * I8_NR * 4 + col * 4 + c % 4];
            acc -= zero[r] * w->colsum[j];
            float base = bias ? bias[j] : 0;
            y[r * ldy + j] = scale[r] * w->scale[j] * (float)acc + base;
        }
    }
}

void m3_i8_gemm_reference(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                          const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                          size_t panel_begin, size_t panel_end) {
    i8_gemm_portable(w, q, ldq, scale, zero, rows, bias, y, ldy, panel_begin, panel_end);
}

// ---------------------------------------------------------------- gemm, AVX512-VNNI
#if M3_X86
#include "vnni_panels.h"

VNNI_TARGET
static void i8_gemm_vnni(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                         const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                         size_t panel_begin, size_t panel_end) {
    struct vnni_operands o = {(const char *)w->packed, w->n, w->k4, (const char *)q, ldq, scale, w->scale, zero, w->colsum};
    vnni_gemm(0, &o, rows, bias, y, ldy, panel_begin, panel_end);
}
#endif

// ---------------------------------------------------------------- gemm, AVX2
// Without VNNI: the same packed weights and the same exact int32 sums, from vpmaddwd on
// 16-bit values. A 16-byte load of a panel row (4 columns × 4 k) sign-extends to 16 int16;
// against x's 4 values of those k (u8 widened to int16, the qword broadcast) vpmaddwd gives
// each column's two pair sums, which hadd folds at the end. |u8·s8 pair| ≤ 64 770 fits int32.
#if M3_X86
#define I8_AVX2_TARGET __attribute__((target("avx2,fma")))
enum { I8_AVX2_MR = 6, I8_AVX2_NC = 8 };

static int has_avx2 = -1;
static int avx2(void) {  // detected once; relaxed atomics as in m3_kernel_level
    int v = __atomic_load_n(&has_avx2, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&has_avx2, v, __ATOMIC_RELAXED);
    }
    return v;
}

// One mr×8 tile: rows x16[0..<mr] (int16, row stride ldx) against 8 columns of one panel
// (`cols` points at their 32 bytes in the panel's first k group), all k4 groups; then the
// same dequantization as the VNNI tile. `mr` is a constant after inlining (12 accumulators).
I8_AVX2_TARGET __attribute__((always_inline))
static inline void i8_tile_avx2(int mr, const int16_t *x16, size_t ldx, const int8_t *cols, size_t k4,
                                const float *sx, const int32_t *zx, const float *sw, const int32_t *colsum,
                                const float *bias, float *y, size_t ldy, size_t ncols) {
    __m256i acc[I8_AVX2_MR][2];
    for (int i = 0; i < I8_AVX2_MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const int8_t *b = cols;
    for (size_t s = 0; s < k4; s++, b += I8_NR * 4) {
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
        for (int i = 0; i < I8_AVX2_MR; i++) {
            if (i >= mr) break;
            int64_t x4;
            memcpy(&x4, x16 + i * ldx + 4 * s, 8);
            __m256i a = _mm256_set1_epi64x(x4);
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(w0, a));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(w1, a));
        }
    }
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)ncols), lanes);
    __m256 bv = bias ? _mm256_maskload_ps(bias, m) : _mm256_setzero_ps();
    __m256 swv = _mm256_loadu_ps(sw);
    __m256i cs = _mm256_loadu_si256((const __m256i *)colsum);
    for (int i = 0; i < I8_AVX2_MR; i++) {
        if (i >= mr) break;
        // hadd gives columns (0 1 4 5 | 2 3 6 7); the qword permute puts them in order.
        __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
        __m256i corrected = _mm256_sub_epi32(sums, _mm256_mullo_epi32(_mm256_set1_epi32(zx[i]), cs));
        __m256 scale = _mm256_mul_ps(_mm256_set1_ps(sx[i]), swv);
        _mm256_maskstore_ps(y + i * ldy, m, _mm256_fmadd_ps(_mm256_cvtepi32_ps(corrected), scale, bv));
    }
}

I8_AVX2_TARGET
static void i8_tile_avx2_any(int mr, const int16_t *x16, size_t ldx, const int8_t *cols, size_t k4,
                             const float *sx, const int32_t *zx, const float *sw, const int32_t *colsum,
                             const float *bias, float *y, size_t ldy, size_t ncols) {
    switch (mr) {
    case 6: i8_tile_avx2(6, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    case 5: i8_tile_avx2(5, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    case 4: i8_tile_avx2(4, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    case 3: i8_tile_avx2(3, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    case 2: i8_tile_avx2(2, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    case 1: i8_tile_avx2(1, x16, ldx, cols, k4, sx, zx, sw, colsum, bias, y, ldy, ncols); break;
    default: break;
    }
}

/// Returns 0 when the widened-activation buffer cannot be allocated (the caller falls back).
I8_AVX2_TARGET
static int i8_gemm_avx2(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                        const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                        size_t panel_begin, size_t panel_end) {
    size_t k4 = w->k4, kk = k4 * 4;
    // Blocks of rows whose int16 activations (≤ 256 KB) stay in L2 while every panel of the
    // range streams past them once per block (a short query's rows are one block).
    size_t block = (256 * 1024 / (kk * 2)) / I8_AVX2_MR * I8_AVX2_MR;
    if (block < I8_AVX2_MR) block = I8_AVX2_MR;
    if (block > rows) block = rows;
    int16_t *x16 = aligned_alloc(32, (block * kk * 2 + 31) & ~(size_t)31);
    if (!x16) return 0;
    for (size_t r0 = 0; r0 < rows; r0 += block) {
        size_t rend = r0 + block < rows ? r0 + block : rows;
        for (size_t r = r0; r < rend; r++) {
            const uint8_t *qr = q + r * ldq;
            int16_t *xr = x16 + (r - r0) * kk;
            size_t c = 0;
            for (; c + 16 <= kk; c += 16)
                _mm256_storeu_si256((__m256i *)(xr + c), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qr + c))));
            for (; c < kk; c++) xr[c] = qr[c];
        }
        for (size_t p = panel_begin; p < panel_end; p++) {
            const int8_t *panel = w->packed + p * k4 * I8_NR * 4;
            size_t j0 = p * I8_NR, ncols = w->n - j0 < I8_NR ? w->n - j0 : I8_NR;
            for (size_t g = 0; g * I8_AVX2_NC < ncols; g++) {
                size_t c0 = g * I8_AVX2_NC, nc = ncols - c0 < I8_AVX2_NC ? ncols - c0 : I8_AVX2_NC;
                const float *b = bias ? bias + j0 + c0 : NULL;
                for (size_t r = r0; r < rend; r += I8_AVX2_MR) {
                    int mr = rend - r < I8_AVX2_MR ? (int)(rend - r) : I8_AVX2_MR;
                    i8_tile_avx2_any(mr, x16 + (r - r0) * kk, kk, panel + c0 * 4, k4, scale + r, zero + r,
                                     w->scale + j0 + c0, w->colsum + j0 + c0, b, y + r * ldy + j0 + c0, ldy, nc);
                }
            }
        }
    }
    free(x16);
    return 1;
}
#endif

int m3_i8_gemm_is_fast(void) {
#if M3_X86
    return vnni() || avx2();
#else
    return 0;
#endif
}

static void i8_gemm_dispatch(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                             const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                             size_t panel_begin, size_t panel_end) {
    if (panel_end > w->panels) panel_end = w->panels;
    if (panel_begin >= panel_end || rows == 0) return;
#if M3_X86
    if (vnni()) {
        i8_gemm_vnni(w, q, ldq, scale, zero, rows, bias, y, ldy, panel_begin, panel_end);
        return;
    }
    if (avx2() && i8_gemm_avx2(w, q, ldq, scale, zero, rows, bias, y, ldy, panel_begin, panel_end)) return;
#endif
    i8_gemm_portable(w, q, ldq, scale, zero, rows, bias, y, ldy, panel_begin, panel_end);
}

void m3_i8_gemm(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                size_t panel_begin, size_t panel_end) {
    i8_gemm_dispatch(w, q, ldq, scale, zero, rows, bias, y, ldy, panel_begin, panel_end);
}
