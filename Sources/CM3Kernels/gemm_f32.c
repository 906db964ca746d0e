// float32 linear layer for short inputs (CM3Linear.h): dot products of x rows and W rows,
// W in its stored (n, k) layout, streamed once per block of x rows.
//
// Loop order, per core (its columns j0 ..< j1):
//   for each block of x rows that stays in half of L2 (all of a short query's rows)
//     for each group of NB = 3 W rows (streamed from memory, the next group prefetched)
//       for each slice of k (≤ 32 KB of the group's rows)
//         for each tile of MR = 4 x rows: 12 ymm accumulators, carried across the slices
// Slicing k keeps every lane's chain (k ≡ l mod 8, ascending) intact, so the bits do not
// depend on the slice or block sizes, nor on the rows or columns of the call.
// A 4×3 tile holds 12 accumulators, 3 W vectors and 1 x vector: the 16 ymm registers of
// AVX2, with 7 loads per 12 FMAs. The W group's slice is re-read from L1 by each row tile.
// With AVX-512F an 8×6 tile runs on zmm registers holding two W rows each (see below).
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
} f32_slice;

/// A tile call's share of the next W group to prefetch, in the order the tiles will read it:
/// column lines (one 64-byte line of each of `rows` W rows, `stride` bytes apart) from `at`
/// until `end`, one every `every` steps of 16 floats of k (see f32_linear_tiled), into L2
/// (into L1 measured 2–3 % slower at 16 rows: the lines evict the group being read).
typedef struct {
    const char *at, *end;
    size_t stride;
    int rows, every, step;
} f32_prefetch;

#define F32_PREFETCH_STEP(pf)                                                                  \
    do {                                                                                        \
        if ((pf).at < (pf).end && ++(pf).step >= (pf).every) {                                  \
            for (int r_ = 0; r_ < (pf).rows; r_++) _mm_prefetch((pf).at + r_ * (pf).stride, _MM_HINT_T1); \
            (pf).at += 64;                                                                      \
            (pf).step = 0;                                                                      \
        }                                                                                       \
    } while (0)

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

/// One mr×nb tile (mr ≤ 4 rows of x against nb ≤ 3 rows of W) over the slice's k range. `mr`
/// and `nb` are constants after inlining. `pf`: this call's share of the next W group's lines.
F32_TARGET __attribute__((always_inline))
static inline void f32_tile(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                            const float *bias, float *y, size_t ldy, f32_prefetch pf) {
    __m256 acc[F32_MR][F32_NB];
    for (int i = 0; i < F32_MR; i++)
        for (int j = 0; j < F32_NB; j++)
            acc[i][j] = s->c0 ? _mm256_load_ps(s->carry + (i * F32_NB + j) * 8) : _mm256_setzero_ps();
    size_t c = s->c0, k = s->k;
    for (; c + 16 <= s->c1; c += 16) {
        F32_PREFETCH_STEP(pf);
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
    case 1: f32_tile(MR, 1, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                  \
    case 2: f32_tile(MR, 2 <= F32_NB ? 2 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, pf); break; \
    case 3: f32_tile(MR, 3 <= F32_NB ? 3 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, pf); break; \
    case 4: f32_tile(MR, 4 <= F32_NB ? 4 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, pf); break; \
    case 5: f32_tile(MR, 5 <= F32_NB ? 5 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, pf); break; \
    case 6: f32_tile(MR, 6 <= F32_NB ? 6 : F32_NB, x, ldx, w, ldw, s, bias, y, ldy, pf); break; \
    default: break;                                                                          \
    }

F32_TARGET
static void f32_tile_any(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                         const float *bias, float *y, size_t ldy, f32_prefetch pf) {
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
                            const float *bias, float *y, size_t ldy, f32_prefetch pf);

enum {
    MAX_BLOCK_ROWS = 256,    // rows per block, so the carried accumulators fit 48 KB of stack
    MAX_GROUP = 6,           // W rows per group (AVX-512's 3 pairs)
    // A W group's k slice, read by every row tile of the block: 32 KB keeps a group of
    // 1,024-long rows (24 KB) whole, with no accumulators carried between slices, and cuts
    // FFN down's 4,096 into 3 (16 KB slices measured 10 % slower at 16 and 128 rows).
    SLICE_BYTES = 32 * 1024
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

/// The loops around a tile kernel of ≤ mr_max x rows × ≤ nb_max W rows, the same for every ISA.
static void f32_linear_tiled(f32_tile_fn tile, int mr_max, int nb_max, const float *x, size_t m, size_t k, size_t ldx,
                             const float *w, size_t ldw, const float *bias, float *y, size_t ldy, size_t j0, size_t j1) {
    // Rows per block: x's block stays in L2 while the W groups stream past it; every block
    // streams this core's W range once more, so the block is as large as L2 allows.
    size_t mrs = (size_t)mr_max, nbs = (size_t)nb_max;
    size_t block = (x_block_budget() / (k * sizeof(float) + 1)) / mrs * mrs;
    if (block < mrs) block = mrs;
    if (block > MAX_BLOCK_ROWS) block = MAX_BLOCK_ROWS;
    // k slices: a group's slice stays in L1 while every row tile of the block reads it
    // (without slicing, FFN down's 4,096-long W rows would be re-read from L2 per tile).
    size_t slices = (nbs * k * sizeof(float) + SLICE_BYTES - 1) / SLICE_BYTES;
    size_t slice = slices <= 1 ? k : ((k + slices - 1) / slices + 15) / 16 * 16;
    // One slot per row tile of the block: a tile's mr_max × nb_max accumulator lanes of 8 floats.
    float carry[MAX_BLOCK_ROWS * MAX_GROUP * 8] __attribute__((aligned(64)));
    size_t slot = mrs * nbs * 8;
    size_t steps_per_slice = (slice + 15) / 16;  // prefetch steps of a full slice
    for (size_t r0 = 0; r0 < m; r0 += block) {
        size_t rend = r0 + block < m ? r0 + block : m;
        size_t tiles = (rend - r0 + mrs - 1) / mrs;
        for (size_t j = j0; j < j1; j += nbs) {
            int nb = j1 - j < nbs ? (int)(j1 - j) : nb_max;
            const float *wj = w + j * ldw, *bj = bias ? bias + j : NULL;
            // The next group streams in while this one computes: its column lines (a line
            // of each of its rows), in the order its tiles will read them, spread evenly over
            // this group's tile calls, so every row tile issues a share (as the int8 kernel's
            // panels do). Not by address: the next group's last rows would then arrive last,
            // just as its first tile needs them (measured 10 % slower than no spreading).
            size_t jn = j + nbs;
            int pf_rows = jn < j1 ? (j1 - jn < nbs ? (int)(j1 - jn) : nb_max) : 0;
            const char *pf_base = (const char *)(w + (jn < j1 ? jn : j) * ldw);
            size_t clines = pf_rows ? (k + 15) / 16 : 0;  // 64-byte column lines of the group
            size_t calls = tiles * ((k + slice - 1) / slice);
            size_t share = (clines + calls - 1) / calls;
            int every = share ? (int)(steps_per_slice / share) : 1;
            if (every < 1) every = 1;
            size_t call = 0;
            for (size_t c0 = 0; c0 < k; c0 += slice) {
                for (size_t r = r0, t = 0; r < rend; r += mrs, t++, call++) {
                    int mr = rend - r < mrs ? (int)(rend - r) : mr_max;
                    f32_slice s = {c0, c0 + slice < k ? c0 + slice : k, k, carry + t * slot};
                    size_t first = call * share < clines ? call * share : clines;
                    size_t last = first + share < clines ? first + share : clines;
                    f32_prefetch pf = {pf_base + first * 64, pf_base + last * 64, ldw * sizeof(float), pf_rows, every, every - 1};
                    tile(mr, nb, x + r * ldx, ldx, wj, ldw, &s, bj, y + r * ldy + j, ldy, pf);
                }
            }
        }
    }
}

// AVX-512: the same per-lane chains on twice the lanes. A zmm holds two W rows side by side
// (lanes 0-7 row j, 8-15 row j+1, the same 8 values of k each) against x's 8 values
// broadcast to both halves, so every lane still sums k ≡ l (mod 8) in ascending order and
// each half reduces as reduce8: the same bits as AVX2 and the portable loop. An 8×6 tile is
// 24 accumulators (8 rows × 3 row pairs), 3 W registers and 1 x register, so each W pair
// built from memory (one shuffle) feeds 8 FMAs.
enum { F5_MR = 8, F5_NP = 3 };
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

/// 8 floats of `lo` and of `hi` (NULL: zeros) as one zmm; `mask` limits both to the tail.
F32_TARGET512 static inline __m512 f5_pair(const float *lo, const float *hi, __m256i mask, int masked) {
    __m256 a = masked ? _mm256_maskload_ps(lo, mask) : _mm256_loadu_ps(lo);
    __m256 b = hi ? (masked ? _mm256_maskload_ps(hi, mask) : _mm256_loadu_ps(hi)) : _mm256_setzero_ps();
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)), _mm256_castps_pd(b), 1));
}

F32_TARGET512 static inline __m512 f5_broadcast(const float *x, __m256i mask, int masked) {
    __m256 a = masked ? _mm256_maskload_ps(x, mask) : _mm256_loadu_ps(x);
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(a)));
}

/// reduce8 of the 16 eight-lane halves of a..h at once, each sum by the same additions as
/// hsum8 (lanes l + l+4, then l + l+2, then l + l+1; a + b == b + a exactly, so the bits are
/// hsum8's). The result holds, in order, the sums of the low halves of a, c, e, g, of their
/// high halves, then of the low and of the high halves of b, d, f, h. Per tile: 21 shuffles
/// and adds for 48 sums instead of ~7 per sum.
F32_TARGET512 static inline __m512 f5_reduce16(__m512 a, __m512 b, __m512 c, __m512 d, __m512 e, __m512 f,
                                               __m512 g, __m512 h) {
    // Quarters q0 q1 | q2 q3 of a zmm are lanes 0-3, 4-7 of its low half, then of its high half.
    // t: [a.lo t, a.hi t, b.lo t, b.hi t] with t_l = s_l + s_{l+4}.
#define F5_T(A, B) _mm512_add_ps(_mm512_shuffle_f32x4(A, B, 0x88), _mm512_shuffle_f32x4(A, B, 0xDD))
    __m512 tab = F5_T(a, b), tcd = F5_T(c, d), tef = F5_T(e, f), tgh = F5_T(g, h);
#undef F5_T
    // u per quarter: [x.u0 x.u1 y.u0 y.u1] with u0 = t0 + t2, u1 = t1 + t3.
    __m512 u1 = _mm512_add_ps(_mm512_shuffle_ps(tab, tcd, 0x44), _mm512_shuffle_ps(tab, tcd, 0xEE));
    __m512 u2 = _mm512_add_ps(_mm512_shuffle_ps(tef, tgh, 0x44), _mm512_shuffle_ps(tef, tgh, 0xEE));
    // the sums u0 + u1: quarter q holds those of quarter q of u1 (two) and of u2 (two).
    return _mm512_add_ps(_mm512_shuffle_ps(u1, u2, 0x88), _mm512_shuffle_ps(u1, u2, 0xDD));
}

/// Stores f5_reduce16's sums of one row pair's accumulators for rows 0-7 (in the order
/// rows 0-3 of column 0, rows 0-3 of column 1, rows 4-7 of column 0, rows 4-7 of column 1)
/// at y's columns 0 and 1, plus bias (if any) as in the scalar path.
F32_TARGET512 static inline void f5_store16(__m512 sums, const float *bias, float *y, size_t ldy) {
    float v[16] __attribute__((aligned(64)));
    _mm512_store_ps(v, sums);
    for (int i = 0; i < 4; i++) {
        float *y0 = y + i * ldy, *y4 = y + (i + 4) * ldy;
        y0[0] = bias ? v[i] + bias[0] : v[i];
        y0[1] = bias ? v[4 + i] + bias[1] : v[4 + i];
        y4[0] = bias ? v[8 + i] + bias[0] : v[8 + i];
        y4[1] = bias ? v[12 + i] + bias[1] : v[12 + i];
    }
}

F32_TARGET512 __attribute__((always_inline))
static inline void f5_tile(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                           const float *bias, float *y, size_t ldy, f32_prefetch pf) {
    __m512 acc[F5_MR][F5_NP];
    int np = (nb + 1) / 2;
    for (int i = 0; i < F5_MR; i++)
        for (int p = 0; p < F5_NP; p++)
            acc[i][p] = s->c0 ? _mm512_load_ps(s->carry + (i * F5_NP + p) * 16) : _mm512_setzero_ps();
    const __m256i all = _mm256_set1_epi32(-1);
    size_t c = s->c0, k = s->k;
    for (; c + 8 <= s->c1; c += 8) {
        if ((c & 15) == 0) F32_PREFETCH_STEP(pf);
        __m512 wv[F5_NP];
        for (int p = 0; p < F5_NP; p++)
            if (p < np) wv[p] = f5_pair(w + 2 * p * ldw + c, 2 * p + 1 < nb ? w + (2 * p + 1) * ldw + c : NULL, all, 0);
        for (int i = 0; i < F5_MR; i++) {
            if (i >= mr) break;
            __m512 xv = f5_broadcast(x + i * ldx + c, all, 0);
            for (int p = 0; p < F5_NP; p++)
                if (p < np) acc[i][p] = _mm512_fmadd_ps(xv, wv[p], acc[i][p]);
        }
    }
    if (s->c1 < k) {  // a slice before the last: carry the chains on
        for (int i = 0; i < F5_MR; i++)
            for (int p = 0; p < F5_NP; p++) _mm512_store_ps(s->carry + (i * F5_NP + p) * 16, acc[i][p]);
        return;
    }
    if (c < k) {  // the masked tail, as AVX2's: zeros add nothing to the lane sums
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k - c)), lanes);
        __m512 wv[F5_NP];
        for (int p = 0; p < F5_NP; p++)
            if (p < np) wv[p] = f5_pair(w + 2 * p * ldw + c, 2 * p + 1 < nb ? w + (2 * p + 1) * ldw + c : NULL, mask, 1);
        for (int i = 0; i < F5_MR; i++) {
            if (i >= mr) break;
            __m512 xv = f5_broadcast(x + i * ldx + c, mask, 1);
            for (int p = 0; p < F5_NP; p++)
                if (p < np) acc[i][p] = _mm512_fmadd_ps(xv, wv[p], acc[i][p]);
        }
    }
    if (mr == F5_MR && nb == 2 * F5_NP) {  // a full tile: 16 lane sums at a time
        // Constant indices only (no loop over p): a variable index into acc keeps the
        // accumulators in memory at -O2, with a store per FMA step.
        f5_store16(f5_reduce16(acc[0][0], acc[4][0], acc[1][0], acc[5][0], acc[2][0], acc[6][0], acc[3][0], acc[7][0]),
                   bias, y, ldy);
        f5_store16(f5_reduce16(acc[0][1], acc[4][1], acc[1][1], acc[5][1], acc[2][1], acc[6][1], acc[3][1], acc[7][1]),
                   bias ? bias + 2 : NULL, y + 2, ldy);
        f5_store16(f5_reduce16(acc[0][2], acc[4][2], acc[1][2], acc[5][2], acc[2][2], acc[6][2], acc[3][2], acc[7][2]),
                   bias ? bias + 4 : NULL, y + 4, ldy);
        return;
    }
    // Unrolled, for constant acc indices (see above) in the partial tiles too.
#pragma GCC unroll 8
    for (int i = 0; i < F5_MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 6
        for (int j = 0; j < nb; j++) {
            __m512d a = _mm512_castps_pd(acc[i][j / 2]);
            __m256 half = _mm256_castpd_ps((j & 1) ? _mm512_extractf64x4_pd(a, 1) : _mm512_castpd512_pd256(a));
            float v = hsum8(half);
            y[i * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

#define F5_NB_CASES(MR)                                                                        \
    switch (nb) {                                                                              \
    case 1: f5_tile(MR, 1, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    case 2: f5_tile(MR, 2, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    case 3: f5_tile(MR, 3, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    case 4: f5_tile(MR, 4, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    case 5: f5_tile(MR, 5, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    case 6: f5_tile(MR, 6, x, ldx, w, ldw, s, bias, y, ldy, pf); break;                     \
    default: break;                                                                            \
    }

F32_TARGET512
static void f5_tile_any(int mr, int nb, const float *x, size_t ldx, const float *w, size_t ldw, const f32_slice *s,
                        const float *bias, float *y, size_t ldy, f32_prefetch pf) {
    switch (mr) {
    case 1: F5_NB_CASES(1) break;
    case 2: F5_NB_CASES(2) break;
    case 3: F5_NB_CASES(3) break;
    case 4: F5_NB_CASES(4) break;
    case 5: F5_NB_CASES(5) break;
    case 6: F5_NB_CASES(6) break;
    case 7: F5_NB_CASES(7) break;
    case 8: F5_NB_CASES(8) break;
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
        f32_linear_tiled(f5_tile_any, F5_MR, 2 * F5_NP, x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
        return;
    }
    if (level >= 1 && avx2()) {
        f32_linear_tiled(f32_tile_any, F32_MR, F32_NB, x, m, k, ldx, w, ldw, bias, y, ldy, j0, j1);
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
