// bfloat16 linear layer: x and W rounded to bfloat16 (nearest even), float32 sums.
//
// Packed W: panels of NR = 64 columns; panel p holds (k2, 64, 2) bf16 — for each pair of
// consecutive k, 64 columns × 2 values, so one 64-byte load is 16 columns × 2 k, the dword
// layout vdpbf16ps multiplies against a broadcast dword (2 bf16 of one x row).
// Columns past n and the k pad are zero.
#include "CM3LowPrecision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define M3_X86 1
#endif

enum { BF_NR = 64, BF_MR = 6 };

struct m3_bf16_weights {
    size_t n, k, k2, panels;
    uint16_t *packed;  // (panels, k2, 64, 2)
    int borrowed;      // m3_bf16_view: the array belongs to the caller (a mapped cache file)
};

static int has_bf16 = -1;
static int bf16(void) {  // detected once; relaxed atomics as in m3_kernel_level
    int v = __atomic_load_n(&has_bf16, __ATOMIC_RELAXED);
    if (v < 0) { v = m3_cpu_has_avx512_bf16(); __atomic_store_n(&has_bf16, v, __ATOMIC_RELAXED); }
    return v;
}

/// float32 → bfloat16, round to nearest even (what vcvtneps2bf16 does); NaN stays NaN.
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

size_t m3_bf16_row_stride(size_t k) { return (k + 1) & ~(size_t)1; }

m3_bf16_weights *m3_bf16_pack(const float *w, size_t n, size_t k) {
    m3_bf16_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k2 = (k + 1) / 2; p->panels = (n + BF_NR - 1) / BF_NR;
    size_t count = p->panels * p->k2 * BF_NR * 2;
    p->packed = aligned_alloc(64, count * sizeof(uint16_t) + 64);
    if (!p->packed) { free(p); return NULL; }
    memset(p->packed, 0, count * sizeof(uint16_t));
    for (size_t j = 0; j < n; j++) {
        uint16_t *panel = p->packed + (j / BF_NR) * p->k2 * BF_NR * 2;
        size_t col = j % BF_NR;
        for (size_t c = 0; c < k; c++)
            panel[(c / 2) * BF_NR * 2 + col * 2 + c % 2] = to_bf16(w[j * k + c]);
    }
    return p;
}

void m3_bf16_free(m3_bf16_weights *w) {
    if (!w) return;
    if (!w->borrowed) free(w->packed);
    free(w);
}

// ---------------------------------------------------------------- cached packings
uint32_t m3_bf16_layout_tag(void) { return (uint32_t)BF_NR << 8 | 2; }

int m3_bf16_layout(size_t n, size_t k, size_t *packed_bytes) {
    size_t panels = n / BF_NR + (n % BF_NR != 0), k2 = k / 2 + (k % 2 != 0), cols, count;
    if (__builtin_mul_overflow(panels, (size_t)BF_NR, &cols)
        || __builtin_mul_overflow(cols, k2 * 2, &count) || k2 * 2 < k
        || __builtin_mul_overflow(count, sizeof(uint16_t), packed_bytes)) return 0;
    return 1;
}

const void *m3_bf16_data(const m3_bf16_weights *w) { return w->packed; }

m3_bf16_weights *m3_bf16_view(size_t n, size_t k, const void *packed) {
    size_t bytes;
    if (!m3_bf16_layout(n, k, &bytes) || ((uintptr_t)packed & 63)) return NULL;
    m3_bf16_weights *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n; p->k = k; p->k2 = (k + 1) / 2; p->panels = (n + BF_NR - 1) / BF_NR;
    p->packed = (uint16_t *)packed;
    p->borrowed = 1;
    return p;
}

size_t m3_bf16_panels(const m3_bf16_weights *w) { return w->panels; }
size_t m3_bf16_bytes(const m3_bf16_weights *w) { return w->panels * w->k2 * BF_NR * 2 * sizeof(uint16_t); }

#if M3_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void convert_rows_avx512(const float *x, size_t rows, size_t k, size_t ldx, uint16_t *out, size_t ldo) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        uint16_t *o = out + r * ldo;
        for (size_t c = 0; c < k; c += 16) {
            __mmask16 m = k - c >= 16 ? 0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, xr + c));
            _mm256_mask_storeu_epi16(o + c, m, (__m256i)h);
        }
        if (k & 1) o[k] = 0;
    }
}
#endif

void m3_bf16_convert_rows(const float *x, size_t rows, size_t k, size_t ldx, uint16_t *out, size_t ldo) {
#if M3_X86
    if (bf16()) { convert_rows_avx512(x, rows, k, ldx, out, ldo); return; }
#endif
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < k; c++) out[r * ldo + c] = to_bf16(x[r * ldx + c]);
        if (k & 1) out[r * ldo + k] = 0;
    }
}

void m3_bf16_gemm_reference(const m3_bf16_weights *w, const uint16_t *x, size_t ldx, size_t rows,
                            const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    size_t j0 = panel_begin * BF_NR, j1 = panel_end * BF_NR < w->n ? panel_end * BF_NR : w->n;
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = j0; j < j1; j++) {
            const uint16_t *panel = w->packed + (j / BF_NR) * w->k2 * BF_NR * 2;
            size_t col = j % BF_NR;
            float acc = 0;
            for (size_t c = 0; c < w->k; c++)
                acc += from_bf16(x[r * ldx + c]) * from_bf16(panel[(c / 2) * BF_NR * 2 + col * 2 + c % 2]);
            y[r * ldy + j] = acc + (bias ? bias[j] : 0);
        }
    }
}

#if M3_X86
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// One MR×64 tile over all k2 pairs; `mr` is a constant after inlining (24 zmm accumulators).
BF16_TARGET __attribute__((always_inline))
static inline void bf16_tile(int mr, const uint16_t *x, size_t ldx, const uint16_t *panel, size_t k2,
                             const float *bias, float *y, size_t ldy, size_t ncols) {
    __m512 acc[BF_MR][4];
    for (int i = 0; i < BF_MR; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    const uint16_t *b = panel;
    for (size_t s = 0; s < k2; s++, b += BF_NR * 2) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 32);
        __m512bh b2 = (__m512bh)_mm512_load_si512(b + 64), b3 = (__m512bh)_mm512_load_si512(b + 96);
        for (int i = 0; i < BF_MR; i++) {
            if (i >= mr) break;
            int32_t a2;
            memcpy(&a2, x + i * ldx + 2 * s, 4);
            __m512bh a = (__m512bh)_mm512_set1_epi32(a2);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], a, b2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], a, b3);
        }
    }
    for (int i = 0; i < BF_MR; i++) {
        if (i >= mr) break;
        float *yr = y + i * ldy;
        for (int v = 0; v < 4; v++) {
            size_t c = (size_t)v * 16;
            if (c >= ncols) break;
            __mmask16 m = ncols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (ncols - c)) - 1);
            __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(yr + c, m, _mm512_add_ps(acc[i][v], bv));
        }
    }
}

BF16_TARGET
static void bf16_gemm_avx512(const m3_bf16_weights *w, const uint16_t *x, size_t ldx, size_t rows,
                             const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    size_t k2 = w->k2;
    // Row blocks whose bf16 activations (≤ 384 KB) stay in L2 while they run over every panel.
    size_t block = (384 * 1024 / (k2 * 4)) / BF_MR * BF_MR;
    if (block < BF_MR) block = BF_MR;
    for (size_t r0 = 0; r0 < rows; r0 += block)
    for (size_t p = panel_begin; p < panel_end; p++) {
        const uint16_t *panel = w->packed + p * k2 * BF_NR * 2;
        size_t j0 = p * BF_NR, ncols = w->n - j0 < BF_NR ? w->n - j0 : BF_NR;
        const float *b = bias ? bias + j0 : NULL;
        size_t r = r0, rend = r0 + block < rows ? r0 + block : rows;
        for (; r + BF_MR <= rend; r += BF_MR)
            bf16_tile(BF_MR, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols);
        switch (rend - r) {
        case 5: bf16_tile(5, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols); break;
        case 4: bf16_tile(4, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols); break;
        case 3: bf16_tile(3, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols); break;
        case 2: bf16_tile(2, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols); break;
        case 1: bf16_tile(1, x + r * ldx, ldx, panel, k2, b, y + r * ldy + j0, ldy, ncols); break;
        default: break;
        }
    }
}
#endif

void m3_bf16_gemm(const m3_bf16_weights *w, const uint16_t *x, size_t ldx, size_t rows,
                  const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    if (panel_end > w->panels) panel_end = w->panels;
    if (panel_begin >= panel_end || rows == 0) return;
#if M3_X86
    if (bf16()) { bf16_gemm_avx512(w, x, ldx, rows, bias, y, ldy, panel_begin, panel_end); return; }
#endif
    m3_bf16_gemm_reference(w, x, ldx, rows, bias, y, ldy, panel_begin, panel_end);
}
