// The AVX512-VNNI tile and panel loop shared by the int8 (gemm_int8.c: u8·s8 vpdpbusd, 4 k a
// dword) and int16 (gemm_int16.c: s16·s16 vpdpwssd, 2 k a dword) linear layers. Both pack W
// as panels of 64 output columns whose k steps are 256 bytes (64 columns × one dword), and
// both read an activation row as one dword a step, so only the instruction and the int8
// zero-point correction differ. `wide` (0: vpdpbusd, 1: vpdpwssd) is a constant at every
// call, and everything here is inlined into one function per kernel, so each gets its own
// code with no run-time test.
#ifndef M3_VNNI_PANELS_H
#define M3_VNNI_PANELS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

enum { VNNI_NR = 64, VNNI_MR = 6 };

/// One product's operands. The activations are rows of dwords (ldq bytes apart); sx per row,
/// sw per column; zx (per row) and colsum (per column) only for int8's zero point, else NULL.
struct vnni_operands {
    const char *packed;  // (panels, steps, 64 dwords)
    size_t n, steps;
    const char *q;
    size_t ldq;
    const float *sx, *sw;
    const int32_t *zx, *colsum;
};

// One MR×64 tile: `mr` rows against one panel over all steps, then
// y = sx·sw·(acc − zx·colsum) + bias for columns 0 ..< ncols. `mr` is a constant after
// inlining, so the 4·mr accumulators live in registers (6×4 = 24 of the 32 zmm). While it
// runs, the tile prefetches its share of the next panel into L2, `pf_lines` lines a step
// from `pf` until `pf_end` (see vnni_gemm).
VNNI_TARGET __attribute__((always_inline))
static inline void vnni_tile(int wide, int mr, const char *q, size_t ldq, const char *panel, size_t steps,
                             const float *sx, const int32_t *zx, const float *sw, const int32_t *colsum,
                             const float *bias, float *y, size_t ldy, size_t ncols,
                             const char *pf, const char *pf_end, size_t pf_lines) {
    __m512i acc[VNNI_MR][4];
    for (int i = 0; i < VNNI_MR; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_si512();
    const char *b = panel;
    for (size_t s = 0; s < steps; s++, b += VNNI_NR * 4) {
        if (pf < pf_end) {
            for (size_t l = 0; l < pf_lines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
            pf += 64 * pf_lines;
        }
        __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 64);
        __m512i b2 = _mm512_load_si512(b + 128), b3 = _mm512_load_si512(b + 192);
        for (int i = 0; i < VNNI_MR; i++) {
            if (i >= mr) break;
            int32_t dword;
            memcpy(&dword, q + i * ldq + 4 * s, 4);
            __m512i a = _mm512_set1_epi32(dword);
            if (wide) {
                acc[i][0] = _mm512_dpwssd_epi32(acc[i][0], a, b0);
                acc[i][1] = _mm512_dpwssd_epi32(acc[i][1], a, b1);
                acc[i][2] = _mm512_dpwssd_epi32(acc[i][2], a, b2);
                acc[i][3] = _mm512_dpwssd_epi32(acc[i][3], a, b3);
            } else {
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], a, b0);
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], a, b1);
                acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], a, b2);
                acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], a, b3);
            }
        }
    }
    // Unrolled, so every acc index is a constant and the accumulators stay in registers
    // (a rolled loop indexes acc at run time: the compiler then keeps it as a stack array,
    // zeroed by a 1.5 KB memset per tile, ~3% of an int8 pass).
#pragma GCC unroll 8
    for (int i = 0; i < VNNI_MR; i++) {
        if (i >= mr) break;
        __m512 s = _mm512_set1_ps(sx[i]);
        float *yr = y + i * ldy;
        for (int v = 0; v < 4; v++) {
            size_t c = (size_t)v * 16;
            __mmask16 m = c >= ncols ? 0 : ncols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (ncols - c)) - 1);
            __m512i sums = acc[i][v];
            if (!wide) sums = _mm512_sub_epi32(sums, _mm512_mullo_epi32(_mm512_set1_epi32(zx[i]), _mm512_maskz_loadu_epi32(m, colsum + c)));
            __m512 scale = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, sw + c));
            __m512 base = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(yr + c, m, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, base));
        }
    }
}

VNNI_TARGET __attribute__((always_inline))
static inline void vnni_tile_any(int wide, int mr, const char *q, size_t ldq, const char *panel, size_t steps,
                                 const float *sx, const int32_t *zx, const float *sw, const int32_t *cs,
                                 const float *bias, float *y, size_t ldy, size_t ncols,
                                 const char *pf, const char *pf_end, size_t pf_lines) {
    switch (mr) {
    case 6: vnni_tile(wide, 6, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    case 5: vnni_tile(wide, 5, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    case 4: vnni_tile(wide, 4, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    case 3: vnni_tile(wide, 3, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    case 2: vnni_tile(wide, 2, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    case 1: vnni_tile(wide, 1, q, ldq, panel, steps, sx, zx, sw, cs, bias, y, ldy, ncols, pf, pf_end, pf_lines); break;
    default: break;
    }
}

// y[rows, panels begin..<end] = dequant(q · Wᵀ) + bias (NULL: none). Panel by panel: the row
// tiles run over panel p while panel p+1 is prefetched into L2, its lines spread over the
// tiles, so the DRAM stream of the weights overlaps the compute of the rows instead of
// alternating with it (a 16-row query is 3 row tiles: without the prefetch the first tile
// waits on DRAM and the other two on the cores).
VNNI_TARGET __attribute__((always_inline))
static inline void vnni_gemm(int wide, const struct vnni_operands *o, size_t rows, const float *bias,
                             float *y, size_t ldy, size_t panel_begin, size_t panel_end) {
    size_t steps = o->steps, panel_bytes = steps * VNNI_NR * 4, lines = panel_bytes / 64;
    // Blocks of rows whose activations (≤ 384 KB) stay in L2 next to one weight panel (256 KB
    // at int8's k = 4096) while the block's tiles run over every panel.
    size_t block = (384 * 1024 / (steps * 4)) / VNNI_MR * VNNI_MR;
    if (block < VNNI_MR) block = VNNI_MR;
    for (size_t r0 = 0; r0 < rows; r0 += block) {
        size_t rend = r0 + block < rows ? r0 + block : rows;
        size_t tiles = (rend - r0 + VNNI_MR - 1) / VNNI_MR;
        for (size_t p = panel_begin; p < panel_end; p++) {
            size_t j0 = p * VNNI_NR, ncols = o->n - j0 < VNNI_NR ? o->n - j0 : VNNI_NR;
            const char *panel = o->packed + p * panel_bytes;
            size_t share = p + 1 < panel_end ? (lines + tiles - 1) / tiles : 0;  // lines per tile
            size_t per_step = (share + steps - 1) / steps;
            const char *next = panel + panel_bytes;
            size_t tile = 0;
            for (size_t r = r0; r < rend; r += VNNI_MR, tile++) {
                int mr = rend - r < VNNI_MR ? (int)(rend - r) : VNNI_MR;
                size_t first = tile * share < lines ? tile * share : lines;
                size_t last = first + share < lines ? first + share : lines;
                vnni_tile_any(wide, mr, o->q + r * o->ldq, o->ldq, panel, steps, o->sx + r, wide ? NULL : o->zx + r,
                              o->sw + j0, wide ? NULL : o->colsum + j0, bias ? bias + j0 : NULL, y + r * ldy + j0, ldy,
                              ncols, next + first * 64, next + last * 64, per_step);
            }
        }
    }
}

#endif
