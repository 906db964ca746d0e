// float32 linear layer for short inputs (CM3Linear.h): dot products of x rows and W rows,
// W in its stored (n, k) layout, streamed once per block of x rows.
//
// Loop order, per core (its columns j0 ..< j1):
//   for each block of x rows that stays in half of L2 (all of a short query's rows)
//     for each group of NB = 3 W rows (streamed from memory, the next group prefetched)
//       for each slice of k small enough that the group's slice stays in L1
//         for each tile of MR = 4 x rows: 12 ymm accumulators, carried across the slices
// Slicing k keeps every lane's chain (k ≡ l mod 8, ascending; mod 16 for AVX-512) intact,
// so the bits do not depend on the slice or block sizes, nor on the rows or columns of the call.
// A 4×3 tile holds 12 accumulators, 3 W vectors and 1 x vector: the 16 ymm registers of
// AVX2, with 7 loads per 12 FMAs. The W group's slice is re-read from L1 by each row tile.
// With AVX-512F a 6×4 tile of 16-lane zmm accumulators runs instead (see below); its lanes
// sum k ≡ l (mod 16), so its bits are m3_f32_linear_reference16's, not the 8-lane ones.
#include "CM3Linear.h"

#include <math.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define M3_X86 1
#endif

enum { F32_MR = 4, F32_NB = 3 };

/// The k range a tile call covers (c0 ..< c1 of k; every slice before the last a multiple
/// of 16 long) and where its accumulators wait between slices (one tile's worth, 64-byte
/// aligned). A slice with c0 > 0 resumes the chains from `carry`; one with c1 < k leaves them there.
typedef struct {
    size_t c0, c1, k;
    float *carry;
    size_t pf_every, pf_phase;  // AVX-512: prefetch `next` at the steps of 16 with (c / 16) % every == phase
} f32_slice;

/// The fixed reduction of the 8 lane sums (the SIMD kernel's shuffle tree, written out).
static inline float reduce8(const float s[8]) {
    float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
    return (t0 + t2) + (t1 + t3);
}

void m3_f32_linear_reference(const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                             const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    for (size_t r = 0; r < m; r++) {
        for (size_t j = j0; j < j1; j++) {
            float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (size_t c = 0; c < k; c++) s[c % 8] = fmaf(x[r * ldx + c], w[j * ldw + c], s[c % 8]);
            float v = reduce8(s);
            y[r * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

/// The 16-lane order (the AVX-512 kernel's): lanes l and l+8 first, then reduce8.
static inline float reduce16(const float s[16]) {
    float t[8];
    for (int l = 0; l < 8; l++) t[l] = s[l] + s[l + 8];
    return reduce8(t);
}

void m3_f32_linear_reference16(const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                               const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    for (size_t r = 0; r < m; r++) {
        for (size_t j = j0; j < j1; j++) {
            float s[16] = {0};
            for (size_t c = 0; c < k; c++) s[c % 16] = fmaf(x[r * ldx + c], w[j * ldw + c], s[c % 16]);
            float v = reduce16(s);
            y[r * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

#if M3_X86
#define F32_TARGET __attribute__((target("avx2,fma")))

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

/// reduce8 on a vector: lanes l + l+4, then l + l+2, then l + l+1.
F32_TARGET static inline float hsum8(__m256 v) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

/// One mr×nb tile (mr ≤ 4 rows of x against nb ≤ 3 rows of W) over all of k. `mr` and `nb`
/// are constants after inlining. `next` (or NULL): the W group after this one, prefetched
/// one 64-byte line per row every 16 floats so it streams in while this group computes.
F32_TARGET __attribute__((always_inline))
static inline void f32_tile(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                            const float *bias, float *y, size_t ldy, const float *next) {
    __m256 acc[F32_MR][F32_NB];
    for (int i = 0; i < F32_MR; i++)
        for (int j = 0; j < F32_NB; j++)
            acc[i][j] = s->c0 ? _mm256_load_ps(s->carry + (i * F32_NB + j) * 8) : _mm256_setzero_ps();
    size_t c = s->c0, k = s->k;
    for (; c + 16 <= s->c1; c += 16) {
        if (next)
            for (int j = 0; j < nb; j++) _mm_prefetch((const char *)(next + j * ldw + c), _MM_HINT_T0);
        for (int h = 0; h < 16; h += 8) {
            __m256 wv[F32_NB];
            for (int j = 0; j < F32_NB; j++)
                if (j < nb) wv[j] = _mm256_loadu_ps(w + j * ldw + c + h);
            for (int i = 0; i < F32_MR; i++) {
                if (i >= mr) break;
                __m256 xv = _mm256_loadu_ps(x + i * ldx + c + h);
                for (int j = 0; j < F32_NB; j++)
                    if (j < nb) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
    }
    if (s->c1 < k) {  // a slice before the last: carry the chains on
        for (int i = 0; i < F32_MR; i++)
            for (int j = 0; j < F32_NB; j++) _mm256_store_ps(s->carry + (i * F32_NB + j) * 8, acc[i][j]);
        return;
    }
    // The tail: whole vectors, then a masked one (zeros add nothing to the lane sums).
    for (; c < k; c += 8) {
        size_t left = k - c;
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left >= 8 ? 8 : (int)left), lanes);
        __m256 wv[F32_NB];
        for (int j = 0; j < F32_NB; j++)
            if (j < nb) wv[j] = _mm256_maskload_ps(w + j * ldw + c, mask);
        for (int i = 0; i < F32_MR; i++) {
            if (i >= mr) break;
            __m256 xv = _mm256_maskload_ps(x + i * ldx + c, mask);
            for (int j = 0; j < F32_NB; j++)
                if (j < nb) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < F32_MR; i++) {
        if (i >= mr) break;
        for (int j = 0; j < F32_NB; j++) {
            if (j >= nb) break;
            float v = hsum8(acc[i][j]);
            y[i * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

// Every (mr, nb) tile shape up to (F32_MR, F32_NB) as its own inlined instance.
#define F32_NB_CASES(MR)                                                                      \
    switch (nb) {                                                                            \
    case 1: f32_tile(MR, 1, x, ldx, w, ldw, s, bias, y, ldy, next); break;                  \
    case 2: f32_tile(MR, 2 <= F32_NB ? 2 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, next); break; \
    case 3: f32_tile(MR, 3 <= F32_NB ? 3 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, next); break; \
    case 4: f32_tile(MR, 4 <= F32_NB ? 4 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, next); break; \
    case 5: f32_tile(MR, 5 <= F32_NB ? 5 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, next); break; \
    case 6: f32_tile(MR, 6 <= F32_NB ? 6 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, next); break; \
    default: break;                                                                          \
    }

F32_TARGET
static void f32_tile_any(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                         const float *bias, float *y, size_t ldy, const float *next) {
    switch (mr) {
    case 1: F32_NB_CASES(1) break;
    case 2: F32_NB_CASES(2 <= F32_MR ? 2 : F32_MR) break;
    case 3: F32_NB_CASES(3 <= F32_MR ? 3 : F32_MR) break;
    case 4: F32_NB_CASES(4 <= F32_MR ? 4 : F32_MR) break;
    case 5: F32_NB_CASES(5 <= F32_MR ? 5 : F32_MR) break;
    case 6: F32_NB_CASES(6 <= F32_MR ? 6 : F32_MR) break;
    default: break;
    }
}

typedef void (*f32_tile_fn)(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                            const float *bias, float *y, size_t ldy, const float *next);

enum {
    MAX_BLOCK_ROWS = 256,    // rows per block
    CARRY_FLOATS = 16384,    // the carried accumulators of a block: 64 KB of stack
    SLICE_BYTES = 16 * 1024  // a W group's k slice: stays in L1 next to an x tile's slice
};

/// Half of this core's L2 (the x block's budget), read once; 256 KB when unknown.
static size_t x_block_budget(void) {
    static size_t cached = 0;
    size_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v == 0) {
        long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        v = l2 >= 256 * 1024 && l2 <= 64L * 1024 * 1024 ? (size_t)l2 / 2 : 128 * 1024;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

/// The loops around a tile kernel of ≤ mr_max x rows × ≤ nb_max W rows with `lanes`-float
/// accumulators, the same for every ISA. `ahead`: how many groups ahead the W rows are
/// prefetched; `spread`: every row tile prefetches a share of them (else the first alone).
static void f32_linear_tiled(f32_tile_fn tile, int mr_max, int nb_max, int lanes, int ahead, int spread,
                             const float *x, size_t m, size_t k, size_t ldx,
                             const float *w, size_t ldw, const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    // Rows per block: x's block stays in L2 while the W groups stream past it; every block
    // streams this core's W range once more, so the block is as large as L2 allows.
    size_t mrs = (size_t)mr_max, nbs = (size_t)nb_max;
    size_t block = (x_block_budget() / (k * sizeof(float) + 1)) / mrs * mrs;
    if (block < mrs) block = mrs;
    if (block > MAX_BLOCK_ROWS) block = MAX_BLOCK_ROWS;
    size_t slot = mrs * nbs * (size_t)lanes, carried = CARRY_FLOATS / slot * mrs;  // rows the carry holds
    if (block > carried) block = carried;
    // k slices: a group's slice stays in L1 while every row tile of the block reads it
    // (without slicing, FFN down's 4,096-long W rows would be re-read from L2 per tile).
    size_t slices = (nbs * k * sizeof(float) + SLICE_BYTES - 1) / SLICE_BYTES;
    size_t slice = slices <= 1 ? k : ((k + slices - 1) / slices + 15) / 16 * 16;
    // One slot per row tile of the block: a tile's mr_max × nb_max accumulators of `lanes` floats.
    float carry[CARRY_FLOATS] __attribute__((aligned(64)));
    for (size_t r0 = 0; r0 < m; r0 += block) {
        size_t rend = r0 + block < m ? r0 + block : m;
        for (size_t j = j0; j < j1; j += nbs) {
            int nb = j1 - j < nbs ? (int)(j1 - j) : nb_max;
            const float *wj = w + j * ldw, *bj = bias ? bias + j : NULL;
            size_t skip = (size_t)ahead * nbs;
            const float *next = j + skip < j1 ? wj + skip * ldw : NULL;
            int nextRows = next ? (j1 - j - skip < nbs ? (int)(j1 - j - skip) : nb_max) : 0;
            size_t tiles = (rend - r0 + mrs - 1) / mrs;
            for (size_t c0 = 0; c0 < k; c0 += slice) {
                for (size_t r = r0, t = 0; r < rend; r += mrs, t++) {
                    int mr = rend - r < mrs ? (int)(rend - r) : mr_max;
                    f32_slice s = {c0, c0 + slice < k ? c0 + slice : k, k, carry + t * slot, 1, 0};
                    // Prefetching one row tile's share keeps the memory requests flowing while
                    // every tile computes; prefetching all in the first tile stalls it on them.
                    const float *pf = nextRows >= nb && (spread || r == r0) ? next : NULL;
                    if (spread) s.pf_every = tiles, s.pf_phase = t;
                    tile(mr, nb, x + r * ldx, ldx, wj, ldw, &s, bj, y + r * ldy + j, ldy, pf);
                }
            }
        }
    }
}

// AVX-512: 16 lanes, a zmm accumulator per (x row, W row) over k ≡ l (mod 16) in ascending
// order, reduced once per output by reduce16 (the high 8 lanes onto the low 8, then hsum8);
// m3_f32_linear_reference16 is the same order in portable C. Both operands are plain zmm
// loads of 16 consecutive floats, so the inner loop has no shuffles: a 6×4 tile is 24
// accumulators, 4 W registers and 1 x register, 10 loads per 24 FMAs. (Measured on 16- to
// 512-row inputs against 4×6, 8×3, 3×8, 8×2 and 2×8 tiles, 6×4 was the fastest.) The next
// group but one is prefetched into L2 (_MM_HINT_T1), each row tile issuing its share.
enum { Z16_MR = 6, Z16_NB = 4 };
#define F32_TARGET512 __attribute__((target("avx512f,avx2,fma")))

static int has_avx512 = -1;
static int avx512(void) {
    int v = __atomic_load_n(&has_avx512, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = avx2() && __builtin_cpu_supports("avx512f");
        __atomic_store_n(&has_avx512, v, __ATOMIC_RELAXED);
    }
    return v;
}

F32_TARGET512 __attribute__((always_inline))
static inline void z16_tile(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                            const float *bias, float *y, size_t ldy, const float *next) {
    __m512 acc[Z16_MR][Z16_NB];
    for (int i = 0; i < Z16_MR; i++)
        for (int j = 0; j < Z16_NB; j++)
            acc[i][j] = s->c0 && i < mr && j < nb ? _mm512_load_ps(s->carry + (i * Z16_NB + j) * 16) : _mm512_setzero_ps();
    size_t c = s->c0, k = s->k, step = (c >> 4) % s->pf_every;
    for (; c + 16 <= s->c1; c += 16) {
        if (next && step == s->pf_phase)
            for (int j = 0; j < nb; j++) _mm_prefetch((const char *)(next + j * ldw + c), _MM_HINT_T1);
        if (++step == s->pf_every) step = 0;
        __m512 wv[Z16_NB];
        for (int j = 0; j < Z16_NB; j++)
            if (j < nb) wv[j] = _mm512_loadu_ps(w + j * ldw + c);
        for (int i = 0; i < Z16_MR; i++) {
            if (i >= mr) break;
            __m512 xv = _mm512_loadu_ps(x + i * ldx + c);
            for (int j = 0; j < Z16_NB; j++)
                if (j < nb) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (s->c1 < k) {  // a slice before the last: carry the chains on
        for (int i = 0; i < Z16_MR; i++)
            for (int j = 0; j < Z16_NB; j++)
                if (i < mr && j < nb) _mm512_store_ps(s->carry + (i * Z16_NB + j) * 16, acc[i][j]);
        return;
    }
    if (c < k) {  // the masked tail: zeros add nothing to the lane sums
        __mmask16 mask = (__mmask16)((1u << (k - c)) - 1);
        __m512 wv[Z16_NB];
        for (int j = 0; j < Z16_NB; j++)
            if (j < nb) wv[j] = _mm512_maskz_loadu_ps(mask, w + j * ldw + c);
        for (int i = 0; i < Z16_MR; i++) {
            if (i >= mr) break;
            __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * ldx + c);
            for (int j = 0; j < Z16_NB; j++)
                if (j < nb) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < Z16_MR; i++) {
        if (i >= mr) break;
        for (int j = 0; j < nb; j++) {
            __m512d a = _mm512_castps_pd(acc[i][j]);
            __m256 lo = _mm256_castpd_ps(_mm512_castpd512_pd256(a)), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(a, 1));
            float v = hsum8(_mm256_add_ps(lo, hi));
            y[i * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

#define Z16_NB_CASES(MR)                                                                       \
    switch (nb) {                                                                              \
    case 1: z16_tile(MR, 1, x, ldx, w, ldw, s, bias, y, ldy, next); break;                    \
    case 2: z16_tile(MR, 2, x, ldx, w, ldw, s, bias, y, ldy, next); break;                    \
    case 3: z16_tile(MR, 3, x, ldx, w, ldw, s, bias, y, ldy, next); break;                    \
    case 4: z16_tile(MR, 4, x, ldx, w, ldw, s, bias, y, ldy, next); break;                    \
    default: break;                                                                            \
    }

F32_TARGET512
static void z16_tile_any(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                         const float *bias, float *y, size_t ldy, const float *next) {
    switch (mr) {
    case 1: Z16_NB_CASES(1) break;
    case 2: Z16_NB_CASES(2) break;
    case 3: Z16_NB_CASES(3) break;
    case 4: Z16_NB_CASES(4) break;
    case 5: Z16_NB_CASES(5) break;
    case 6: Z16_NB_CASES(6) break;
    default: break;
    }
}

#endif

int m3_f32_linear_is_simd(void) {
#if M3_X86
    return avx512() ? 2 : avx2();
#else
    return 0;
#endif
}

void m3_f32_linear_isa(int level, const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                       const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    if (j0 >= j1 || m == 0) return;
#if M3_X86
    if (level >= 2 && avx512()) {
        f32_linear_tiled(z16_tile_any, Z16_MR, Z16_NB, 16, 2, 1, x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
        return;
    }
    if (level >= 1 && avx2()) {
        f32_linear_tiled(f32_tile_any, F32_MR, F32_NB, 8, 1, 0, x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
        return;
    }
#endif
    (void)level;
    m3_f32_linear_reference(x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
}

void m3_f32_linear(const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                   const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    m3_f32_linear_isa(2, x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
}
