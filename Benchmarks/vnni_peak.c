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

// 12 independent chains c[k] = OP(c[k], a, b), `iters` steps each (unrolled: constant trip
// count), the operands kept opaque to the compiler; leaves the sum of the chains in `total`.
#define CHAINS(T, ZERO, OP, ADD, total)                                    \
    T c[12];                                                               \
    for (int k = 0; k < 12; k++) c[k] = ZERO;                              \
    for (long i = 0; i < iters; i++) {                                     \
        __asm__ volatile("" : "+v"(a), "+v"(b));                           \
        _Pragma("GCC unroll 12") for (int k = 0; k < 12; k++) c[k] = OP(c[k], a, b); \
    }                                                                      \
    T total = c[0];                                                        \
    for (int k = 1; k < 12; k++) total = ADD(total, c[k]);

// vpdpbusd zmm. Returns a value that depends on every chain, so nothing is optimised away.
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline))
static long long run(long iters, int seed) {
    __m512i a = _mm512_set1_epi32(0x01010101 * (seed & 3)), b = _mm512_set1_epi32(0x01FF01FF);
    CHAINS(__m512i, _mm512_setzero_si512(), _mm512_dpbusd_epi32, _mm512_add_epi32, s)
    return _mm512_reduce_add_epi32(s);
}

// vfmadd231ps zmm (operand order: c + a·b).
#define FMA_ACC(c, a, b) _mm512_fmadd_ps(a, b, c)
__attribute__((target("avx512f"), noinline))
static long long run_fma(long iters, int seed) {
    __m512 a = _mm512_set1_ps(1.0f + (float)(seed & 3) * 1e-7f), b = _mm512_set1_ps(0.999999f);
    CHAINS(__m512, _mm512_setzero_ps(), FMA_ACC, _mm512_add_ps, s)
    return (long long)_mm512_reduce_add_ps(s);
}

// vdpbf16ps zmm (AVX512-BF16: 32 bfloat16 pairs into 16 float32 lanes, the ColBERT MaxSim of
// PQ rows).
__attribute__((target("avx512f,avx512bf16"), noinline))
static long long run_bf16(long iters, int seed) {
    __m512bh a = (__m512bh)_mm512_set1_epi16((short)(0x3F80 + (seed & 3))), b = (__m512bh)_mm512_set1_epi16(0x3F00);
    CHAINS(__m512, _mm512_setzero_ps(), _mm512_dpbf16_ps, _mm512_add_ps, s)
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
