// int16 linear layer: per-row symmetric int16 activations × per-column int16 weights, exact
// int32 sums. About 11–12 bits a side where int8 has 8, at two thirds of two-part int8's
// work: vpdpwssd (AVX512-VNNI) multiplies pairs of int16 and runs at vpdpbusd's instruction
// rate, so 32 multiply-adds an instruction against vpdpbusd's 64.
//
// Math, for output (m, j):   x[m,k] ≈ sx[m]·qx[m,k],   W[j,k] ≈ sw[j]·qw[j,k]
//   y[m,j] = sx[m]·sw[j]·Σ_k qx·qw + b[j]
// |qw| ≤ 2047 (I16_WMAX) and |qx| ≤ m3_i16_activation_limit(k) = ⌊(2³¹−1) / (k₂·2047)⌋, so
// |Σ_k qx·qw| < 2³¹ for any values: the int32 sums are exact, never wrapped. At the
// model's k = 1024 that is 1024 levels a side for x and 2047 for W.
//
// Packed W: panels of NR = 64 columns; panel p holds (k2, 64, 2) int16 — for each pair of
// consecutive k, 64 columns × 2 values, so one 64-byte load is 16 columns × 2 k, the dword
// layout vpdpwssd (and AVX2's vpmaddwd) multiplies against a broadcast dword (2 int16 of
// one x row). Columns past n and k past the real k are zero, so they add nothing.
#include "CM3LowPrecision.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define M3_X86 1
#endif

enum { I16_NR = 64, I16_WMAX = 2047 };  // I16_NR = VNNI_NR (vnni_panels.h)

static inline float round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }  // |v| < 2²²

struct m3_i16_weights {
    size_t n, k, k2, panels;
    int16_t *packed;  // (panels, k2, 64, 2)
    float *scale;     // (panels·64), 0 past n
    int borrowed;     // m3_i16_view: the arrays belong to the caller (a mapped cache file)
};

size_t m3_i16_row_stride(size_t k) { return (k + 1) & ~(size_t)1; }

int32_t m3_i16_activation_limit(size_t k) {
    size_t k2 = m3_i16_row_stride(k);
    if (k2 == 0) return 32767;
    size_t limit = (size_t)INT32_MAX / (k2 * I16_WMAX);
    return limit > 32767 ? 32767 : (int32_t)limit;  // 0 when k is too large for exact sums
}

// ---------------------------------------------------------------- packing
int m3_i16_layout(size_t n, size_t k, size_t *packed_bytes, size_t *scale_bytes) {
    size_t panels = n / I16_NR + (n % I16_NR != 0), k2 = k / 2 + (k % 2 != 0), cols, values, bytes;
    if (__builtin_mul_overflow(panels, (size_t)I16_NR, &cols) || __builtin_mul_overflow(cols, k2 * 2, &values)
        || __builtin_mul_overflow(values, sizeof(int16_t), &bytes) || k2 * 2 < k
        || cols > SIZE_MAX / sizeof(float)) return 0;
    *packed_bytes = bytes;
    *scale_bytes = cols * sizeof(float);
    return 1;
}

uint32_t m3_i16_layout_tag(void) { return (uint32_t)I16_NR << 16 | (uint32_t)I16_WMAX << 2 | 2; }

m3_i16_weights *m3_i16_pack(const float *w, size_t n, size_t k) {
    size_t packed_bytes, scale_bytes;
    if (!m3_i16_layout(n, k, &packed_bytes, &scale_bytes) || m3_i16_activation_limit(k) < 1) return NULL;
    m3_i16_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k2 = (k + 1) / 2; p->panels = (n + I16_NR - 1) / I16_NR;
    p->packed = aligned_alloc(64, packed_bytes + 64);
    p->scale = aligned_alloc(64, scale_bytes + 64);
    if (!p->packed || !p->scale) { m3_i16_free(p); return NULL; }
    memset(p->packed, 0, packed_bytes);
    memset(p->scale, 0, scale_bytes);
    for (size_t j = 0; j < n; j++) {
        const float *row = w + j * k;
        float amax = 0;
        for (size_t c = 0; c < k; c++) amax = fmaxf(amax, fabsf(row[c]));
        float s = amax > 0 ? amax / (float)I16_WMAX : 1.0f;
        float inv = 1.0f / s;
        int16_t *panel = p->packed + (j / I16_NR) * p->k2 * I16_NR * 2;
        size_t col = j % I16_NR;
        for (size_t c = 0; c < k; c++) {
            float q = fmaxf(-(float)I16_WMAX, fminf((float)I16_WMAX, round_even(fmaxf(-1e6f, fminf(1e6f, row[c] * inv)))));
            panel[(c / 2) * I16_NR * 2 + col * 2 + c % 2] = (int16_t)q;
        }
        p->scale[j] = s;
    }
    return p;
}

void m3_i16_free(m3_i16_weights *w) {
    if (!w) return;
    if (!w->borrowed) { free(w->packed); free(w->scale); }
    free(w);
}

void m3_i16_parts(const m3_i16_weights *w, const void **packed, const void **scale) {
    *packed = w->packed; *scale = w->scale;
}

m3_i16_weights *m3_i16_view(size_t n, size_t k, const void *packed, const void *scale) {
    size_t a, b;
    if (!m3_i16_layout(n, k, &a, &b) || m3_i16_activation_limit(k) < 1) return NULL;
    if (((uintptr_t)packed | (uintptr_t)scale) & 63) return NULL;  // aligned 64-byte loads
    m3_i16_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k2 = (k + 1) / 2; p->panels = (n + I16_NR - 1) / I16_NR;
    p->packed = (int16_t *)packed; p->scale = (float *)scale;
    p->borrowed = 1;
    return p;
}

size_t m3_i16_panels(const m3_i16_weights *w) { return w->panels; }
size_t m3_i16_bytes(const m3_i16_weights *w) { return w->panels * I16_NR * (w->k2 * 4 + 4); }
float m3_i16_weight_scale(const m3_i16_weights *w, size_t j) { return w->scale[j]; }

// ---------------------------------------------------------------- activations
// Per row: scale = max|x| / limit, q = round-to-nearest-even(x / scale) clamped to ±limit.
// The AVX-512 and portable versions make the same float operations, so the same bytes.
static void quantize_rows_portable(const float *x, size_t rows, size_t k, size_t ldx,
                                   int16_t *q, size_t ldq, float *scale) {
    size_t stride = m3_i16_row_stride(k);
    float limit = (float)m3_i16_activation_limit(k);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        int16_t *qr = q + r * ldq;
        float amax = 0;
        for (size_t c = 0; c < k; c++) amax = fmaxf(amax, fabsf(xr[c]));
        scale[r] = amax > 0 ? amax / limit : 1.0f;
        float inv = 1.0f / scale[r];
        for (size_t c = 0; c < k; c++)
            qr[c] = (int16_t)fmaxf(-limit, fminf(limit, round_even(fmaxf(-1e6f, fminf(1e6f, xr[c] * inv)))));
        for (size_t c = k; c < stride; c++) qr[c] = 0;
    }
}

#if M3_X86
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_rows_avx512(const float *x, size_t rows, size_t k, size_t ldx,
                                 int16_t *q, size_t ldq, float *scale) {
    size_t stride = m3_i16_row_stride(k);
    int32_t limit = m3_i16_activation_limit(k);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        int16_t *qr = q + r * ldq;
        __m512 vmax = _mm512_setzero_ps();
        size_t c = 0;
        for (; c + 16 <= k; c += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xr + c)));
        float amax = _mm512_reduce_max_ps(vmax);
        for (size_t t = c; t < k; t++) amax = fmaxf(amax, fabsf(xr[t]));
        scale[r] = amax > 0 ? amax / (float)limit : 1.0f;
        __m512 inv = _mm512_set1_ps(1.0f / scale[r]);
        __m512i lo = _mm512_set1_epi32(-limit), hi = _mm512_set1_epi32(limit);
        for (c = 0; c < k; c += 16) {
            __mmask16 m = k - c >= 16 ? 0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            // cvtps rounds to nearest even (MXCSR default), like round_even above.
            __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + c), inv));
            iv = _mm512_min_epi32(_mm512_max_epi32(iv, lo), hi);
            _mm256_mask_storeu_epi16(qr + c, m, _mm512_cvtepi32_epi16(iv));
        }
        for (c = k; c < stride; c++) qr[c] = 0;
    }
}
#endif

// ---------------------------------------------------------------- gemm, portable
static void i16_gemm_portable(const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                              size_t rows, const float *bias, float *y, size_t ldy,
                              size_t panel_begin, size_t panel_end) {
    size_t j0 = panel_begin * I16_NR, j1 = panel_end * I16_NR < w->n ? panel_end * I16_NR : w->n;
    for (size_t r = 0; r < rows; r++) {
        const int16_t *qr = q + r * ldq;
        for (size_t j = j0; j < j1; j++) {
            const int16_t *panel = w->packed + (j / I16_NR) * w->k2 * I16_NR * 2;
            size_t col = j % I16_NR;
            int64_t acc = 0;  // < 2³¹ by the limits; int64 keeps a forged cache from overflow UB
            for (size_t c = 0; c < w->k; c++) acc += (int32_t)qr[c] * panel[(c / 2) * I16_NR * 2 + col * 2 + c % 2];
            y[r * ldy + j] = fmaf((float)(int32_t)(uint32_t)acc, scale[r] * w->scale[j], bias ? bias[j] : 0);
        }
    }
}

#if M3_X86
// ---------------------------------------------------------------- gemm, AVX512-VNNI
#include "vnni_panels.h"

VNNI_TARGET
static void i16_gemm_vnni(const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                          size_t rows, const float *bias, float *y, size_t ldy,
                          size_t panel_begin, size_t panel_end) {
    struct vnni_operands o = {(const char *)w->packed, w->n, w->k2, (const char *)q, ldq * 2, scale, w->scale, NULL, NULL};
    vnni_gemm(1, &o, rows, bias, y, ldy, panel_begin, panel_end);
}

// ---------------------------------------------------------------- gemm, AVX2
// The same packed weights and exact sums from vpmaddwd: a 32-byte load of a panel's pair
// step is 8 columns × 2 k, against x's 2 values of those k broadcast as a dword.
#define I16_AVX2_TARGET __attribute__((target("avx2,fma")))
enum { I16_AVX2_MR = 6 };

I16_AVX2_TARGET __attribute__((always_inline))
static inline void i16_tile_avx2(int mr, const int16_t *q, size_t ldq, const int16_t *cols, size_t k2,
                                 const float *sx, const float *sw, const float *bias, float *y, size_t ldy,
                                 size_t ncols) {
    __m256i acc[I16_AVX2_MR][2];
    for (int i = 0; i < I16_AVX2_MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const int16_t *b = cols;
    for (size_t s = 0; s < k2; s++, b += I16_NR * 2) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)b), w1 = _mm256_loadu_si256((const __m256i *)(b + 16));
        for (int i = 0; i < I16_AVX2_MR; i++) {
            if (i >= mr) break;
            int32_t a2;
            memcpy(&a2, q + i * ldq + 2 * s, 4);
            __m256i a = _mm256_set1_epi32(a2);
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(w0, a));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(w1, a));
        }
    }
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int h = 0; h < 2; h++) {
        if ((size_t)h * 8 >= ncols) break;
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ncols - (size_t)h * 8)), lanes);
        __m256 swv = _mm256_load_ps(sw + h * 8);
        __m256 base = bias ? _mm256_maskload_ps(bias + h * 8, m) : _mm256_setzero_ps();
        for (int i = 0; i < I16_AVX2_MR; i++) {
            if (i >= mr) break;
            __m256 s = _mm256_mul_ps(_mm256_set1_ps(sx[i]), swv);
            _mm256_maskstore_ps(y + i * ldy + h * 8, m, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][h]), s, base));
        }
    }
}

I16_AVX2_TARGET
static void i16_gemm_avx2(const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                          size_t rows, const float *bias, float *y, size_t ldy,
                          size_t panel_begin, size_t panel_end) {
    size_t k2 = w->k2;
    for (size_t p = panel_begin; p < panel_end; p++) {
        const int16_t *panel = w->packed + p * k2 * I16_NR * 2;
        size_t j0 = p * I16_NR, ncols = w->n - j0 < I16_NR ? w->n - j0 : I16_NR;
        for (size_t c0 = 0; c0 < ncols; c0 += 16) {
            size_t nc = ncols - c0 < 16 ? ncols - c0 : 16;
            const float *b = bias ? bias + j0 + c0 : NULL;
            for (size_t r = 0; r < rows; r += I16_AVX2_MR) {
                int mr = rows - r < I16_AVX2_MR ? (int)(rows - r) : I16_AVX2_MR;
                const int16_t *qr = q + r * ldq, *cols = panel + c0 * 2;
                const float *sx = scale + r, *sw = w->scale + j0 + c0;
                float *yr = y + r * ldy + j0 + c0;
                switch (mr) {
                case 6: i16_tile_avx2(6, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                case 5: i16_tile_avx2(5, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                case 4: i16_tile_avx2(4, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                case 3: i16_tile_avx2(3, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                case 2: i16_tile_avx2(2, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                default: i16_tile_avx2(1, qr, ldq, cols, k2, sx, sw, b, yr, ldy, nc); break;
                }
            }
        }
    }
}
#endif

// ---------------------------------------------------------------- dispatch
int m3_i16_gemm_level(void) {
#if M3_X86
    __builtin_cpu_init();
    if (m3_cpu_has_avx512_vnni()) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

static int cached_level = -1;
static int level(void) {  // detected once; relaxed atomics as in m3_kernel_level
    int v = __atomic_load_n(&cached_level, __ATOMIC_RELAXED);
    if (v < 0) { v = m3_i16_gemm_level(); __atomic_store_n(&cached_level, v, __ATOMIC_RELAXED); }
    return v;
}

void m3_i16_quantize_rows(const float *x, size_t rows, size_t k, size_t ldx, int16_t *q, size_t ldq, float *scale) {
#if M3_X86
    if (level() >= 2) { quantize_rows_avx512(x, rows, k, ldx, q, ldq, scale); return; }
#endif
    quantize_rows_portable(x, rows, k, ldx, q, ldq, scale);
}

void m3_i16_gemm_at(int max_level, const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                    size_t rows, const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    if (panel_end > w->panels) panel_end = w->panels;
    if (panel_begin >= panel_end || rows == 0) return;
    int l = level() < max_level ? level() : max_level;
#if M3_X86
    if (l >= 2) { i16_gemm_vnni(w, q, ldq, scale, rows, bias, y, ldy, panel_begin, panel_end); return; }
    if (l == 1) { i16_gemm_avx2(w, q, ldq, scale, rows, bias, y, ldy, panel_begin, panel_end); return; }
#endif
    (void)l;
    i16_gemm_portable(w, q, ldq, scale, rows, bias, y, ldy, panel_begin, panel_end);
}

void m3_i16_gemm(const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                 size_t rows, const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    m3_i16_gemm_at(2, w, q, ldq, scale, rows, bias, y, ldy, panel_begin, panel_end);
}
