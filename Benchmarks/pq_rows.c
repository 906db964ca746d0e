// ColBERT MaxSim over PQ rows decoded (the default storages: pq4 at 1024-d, pq2 at 384-d):
// float32 (m3cx_maxsim_pq_rows) against bfloat16 (m3cx_maxsim_pq_rows_bf16: vdpbf16ps where
// the CPU has AVX512-BF16) and the bfloat16 values widened to float32 at the AVX2 level (what
// a CPU without BF16 runs), 16 query rows × 12,000 passage rows (the 31-chunk serve index's
// ColBERT rows), best of 5 by the process's CPU clock.
//
//   clang -O2 -ISources/CM3Kernels/include Benchmarks/pq_rows.c Sources/CM3Kernels/compressed_kernels.c \
//       Sources/CM3Kernels/index_kernels.c -lm -o /tmp/pq_rows && /tmp/pq_rows
#include "CM3CompressedKernels.h"
#include "CM3IndexKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float uniform(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 8388608.0f - 1.0f;
}

int main(void) {
    size_t shapes[2][2] = {{1024, 256}, {384, 192}};  // d, subspaces
    unsigned seed = 7;
    for (int c = 0; c < 2; c++) {
        size_t d = shapes[c][0], m = shapes[c][1], nq = 16, np = 12000;
        float *codebook = malloc(sizeof(float) * d * 256), *q = malloc(sizeof(float) * nq * d);
        uint8_t *codes = malloc(np * m);
        uint16_t *codebook16 = malloc(2 * d * 256), *q16 = malloc(2 * nq * d);
        if (!codebook || !q || !codes || !codebook16 || !q16) return 1;
        for (size_t i = 0; i < d * 256; i++) codebook[i] = 0.06f * uniform(&seed);
        for (size_t i = 0; i < nq * d; i++) q[i] = 0.06f * uniform(&seed);
        for (size_t i = 0; i < np * m; i++) codes[i] = (uint8_t)(uniform(&seed) * 128 + 128);
        m3cx_round_bf16(codebook, d * 256, codebook16);
        m3cx_round_bf16(q, nq * d, q16);
        double best[3] = {1e9, 1e9, 1e9};
        float score[3] = {0};
        for (int rep = 0; rep < 5; rep++) {
            for (int k = 0; k < 3; k++) {
                double t = cpu();
                score[k] = k == 0 ? m3cx_maxsim_pq_rows(q, nq, d, codebook, m, codes, np)
                         : k == 1 ? m3cx_maxsim_pq_rows_bf16(q16, nq, d, codebook16, m, codes, np)
                                  : m3cx_maxsim_pq_rows_bf16_isa(M3IX_ISA_AVX2, q16, nq, d, codebook16, m, codes, np);
                t = cpu() - t;
                if (t < best[k]) best[k] = t;
            }
        }
        printf("d %4zu, %3zu subspaces (pq%zu), %zu × %zu rows: float32 %.2f ms, bfloat16 %.2f ms (%s, %.2f×), "
               "widened at AVX2 %.2f ms; scores %.6f / %.6f / %.6f\n", d, m, d / m, nq, np, best[0] * 1e3, best[1] * 1e3,
               m3cx_bf16_is_fast() ? "vdpbf16ps" : "no AVX512-BF16: widened", best[0] / best[1], best[2] * 1e3,
               score[0], score[1], score[2]);
    }
    return 0;
}
