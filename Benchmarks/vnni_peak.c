// Peak vpdpbusd (AVX512-VNNI, zmm) rate of this machine: the compute floor under an int8
// encoder pass (each vpdpbusd zmm is 64 u8·s8 multiply-adds); and, with `fma`, the peak
// vfmadd231ps zmm rate, the floor under a float32 pass (16 multiply-adds, 32 FLOP each); with
// `bf16`, the vdpbf16ps zmm rate (32 bfloat16 multiply-adds each).
//
//   clang -O3 -pthread Benchmarks/vnni_peak.c -o /tmp/vnni_peak && /tmp/vnni_peak [threads] [fma|bf16]
//
// Each thread runs independent chains of the instruction on registers only (12 accumulators, more
// than latency × ports, so the chains never wait on each other), best of 7 repeats, timed by
// the thread's own CPU clock (the machine is shared: wall time would count other processes'
// slices). Prints the rate per core and the sum over `threads` threads run at once.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// 12 independent accumulators; `iters` × 12 vpdpbusd. Returns a value that depends on them
// all so nothing is optimised away.
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline))
static long long run(long iters, int seed) {
    __m512i a = _mm512_set1_epi32(0x01010101 * (seed & 3)), b = _mm512_set1_epi32(0x01FF01FF);
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512i c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (long i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(a), "+v"(b));  // keep the operands opaque to the compiler
        c0 = _mm512_dpbusd_epi32(c0, a, b); c1 = _mm512_dpbusd_epi32(c1, a, b);
        c2 = _mm512_dpbusd_epi32(c2, a, b); c3 = _mm512_dpbusd_epi32(c3, a, b);
        c4 = _mm512_dpbusd_epi32(c4, a, b); c5 = _mm512_dpbusd_epi32(c5, a, b);
        c6 = _mm512_dpbusd_epi32(c6, a, b); c7 = _mm512_dpbusd_epi32(c7, a, b);
        c8 = _mm512_dpbusd_epi32(c8, a, b); c9 = _mm512_dpbusd_epi32(c9, a, b);
        c10 = _mm512_dpbusd_epi32(c10, a, b); c11 = _mm512_dpbusd_epi32(c11, a, b);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
    return _mm512_reduce_add_epi32(s);
}

// The same 12 chains of vfmadd231ps zmm.
__attribute__((target("avx512f"), noinline))
static long long run_fma(long iters, int seed) {
    __m512 a = _mm512_set1_ps(1.0f + (float)(seed & 3) * 1e-7f), b = _mm512_set1_ps(0.999999f);
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (long i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(a), "+v"(b));
        c0 = _mm512_fmadd_ps(a, b, c0); c1 = _mm512_fmadd_ps(a, b, c1);
        c2 = _mm512_fmadd_ps(a, b, c2); c3 = _mm512_fmadd_ps(a, b, c3);
        c4 = _mm512_fmadd_ps(a, b, c4); c5 = _mm512_fmadd_ps(a, b, c5);
        c6 = _mm512_fmadd_ps(a, b, c6); c7 = _mm512_fmadd_ps(a, b, c7);
        c8 = _mm512_fmadd_ps(a, b, c8); c9 = _mm512_fmadd_ps(a, b, c9);
        c10 = _mm512_fmadd_ps(a, b, c10); c11 = _mm512_fmadd_ps(a, b, c11);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    return (long long)_mm512_reduce_add_ps(s);
}

// The same 12 chains of vdpbf16ps zmm (AVX512-BF16: 32 bfloat16 pairs into 16 float32 lanes,
// the ColBERT MaxSim of PQ rows).
__attribute__((target("avx512f,avx512bf16"), noinline))
static long long run_bf16(long iters, int seed) {
    __m512bh a = (__m512bh)_mm512_set1_epi16((short)(0x3F80 + (seed & 3))), b = (__m512bh)_mm512_set1_epi16(0x3F00);
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (long i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(a), "+v"(b));
        c0 = _mm512_dpbf16_ps(c0, a, b); c1 = _mm512_dpbf16_ps(c1, a, b);
        c2 = _mm512_dpbf16_ps(c2, a, b); c3 = _mm512_dpbf16_ps(c3, a, b);
        c4 = _mm512_dpbf16_ps(c4, a, b); c5 = _mm512_dpbf16_ps(c5, a, b);
        c6 = _mm512_dpbf16_ps(c6, a, b); c7 = _mm512_dpbf16_ps(c7, a, b);
        c8 = _mm512_dpbf16_ps(c8, a, b); c9 = _mm512_dpbf16_ps(c9, a, b);
        c10 = _mm512_dpbf16_ps(c10, a, b); c11 = _mm512_dpbf16_ps(c11, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    return (long long)_mm512_reduce_add_ps(s);
}

static int measure_fma = 0, measure_bf16 = 0;

static const long iters = 50 * 1000 * 1000;  // 600 M instructions per thread per repeat

/// Best instructions/s of one thread over 7 repeats (its CPU time).
static void *best_rate(void *arg) {
    double best = 0;
    long long sink = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = seconds();
        int seed = (int)(size_t)arg + r;
        sink += measure_fma ? run_fma(iters, seed) : measure_bf16 ? run_bf16(iters, seed) : run(iters, seed);
        double rate = (double)iters * 12 / (seconds() - t0);
        if (rate > best) best = rate;
    }
    double *out = malloc(sizeof *out);
    if (out) *out = best + (double)(sink & 1) * 1e-30;
    return out;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 256) threads = 2;
    measure_fma = argc > 2 && strcmp(argv[2], "fma") == 0;
    measure_bf16 = argc > 2 && strcmp(argv[2], "bf16") == 0;
    if (measure_bf16 && !__builtin_cpu_supports("avx512bf16")) { printf("no AVX512-BF16 here\n"); return 0; }
    int counts[2] = {1, threads};
    for (int c = 0; c < 2; c++) {
        pthread_t tid[256];
        double total = 0;
        for (int t = 0; t < counts[c]; t++) pthread_create(&tid[t], NULL, best_rate, (void *)(size_t)t);
        for (int t = 0; t < counts[c]; t++) {
            void *r = NULL;
            pthread_join(tid[t], &r);
            if (r) { total += *(double *)r; free(r); }
        }
        if (measure_bf16)
            printf("%d thread(s): %.2f G vdpbf16ps zmm/s = %.0f GMAC/s (bfloat16)\n", counts[c], total / 1e9, total * 32 / 1e9);
        else if (measure_fma)
            printf("%d thread(s): %.2f G vfmadd231ps zmm/s = %.0f GFLOP/s (float32)\n", counts[c], total / 1e9, total * 32 / 1e9);
        else
            printf("%d thread(s): %.2f G vpdpbusd/s = %.0f GMAC/s (int8)\n", counts[c], total / 1e9, total * 64 / 1e9);
    }
    return 0;
}
