// One encoder pass's int8 linear layers on one core: 24 layers of BGE-M3 size (QKV 3072×1024,
// output 1024×1024, FFN up 4096×1024 in int16, FFN down 1024×4096; 0.40 GB of packed
// weights, more than the last-level cache holds), for 16 rows (a 16-token query) and 128 (a
// batch of 8). Timed by the process's CPU clock (the machine is shared), best of 7.
//
//   clang -O3 -ISources/CM3Kernels/include Benchmarks/int8_pass.c Sources/CM3Kernels/gemm_int8.c \
//       Sources/CM3Kernels/gemm_int16.c -lm -o /tmp/int8_pass && /tmp/int8_pass
//
// GMAC/s counts the multiply-adds the kernels execute, FFN up's twice (vpdpwssd does 32 an
// instruction, vpdpbusd 64); compare with Benchmarks/vnni_peak.c.
#include "CM3LowPrecision.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { L = 24, H = 1024, F = 4096, MAXM = 128 };

int main(void) {
    float *w = malloc(sizeof(float) * F * H);
    if (!w) return 1;
    for (size_t i = 0; i < (size_t)F * H; i++) w[i] = ((float)((i * 2654435761u) % 2001) - 1000) / 20000;
    m3_i8_weights *qkv[L], *o[L], *down[L];
    m3_i16_weights *up[L];
    for (int l = 0; l < L; l++) {
        qkv[l] = m3_i8_pack(w, 3 * H, H); o[l] = m3_i8_pack(w, H, H); up[l] = m3_i16_pack(w, F, H);
        down[l] = m3_i8_pack(w, H, F);
        if (!qkv[l] || !o[l] || !up[l] || !down[l]) return 1;
    }
    uint8_t *q = malloc((size_t)MAXM * F);
    int16_t *q16 = malloc(sizeof(int16_t) * MAXM * H);
    float *x = malloc(sizeof(float) * MAXM * F), *y = malloc(sizeof(float) * MAXM * F), s[MAXM], s16[MAXM];
    int32_t z[MAXM];
    if (!q || !q16 || !x || !y) return 1;
    for (size_t i = 0; i < (size_t)MAXM * F; i++) x[i] = (float)((i * 40503u) % 1000) / 500 - 1;
    m3_i8_quantize_rows(x, MAXM, F, F, q, F, s, z, 1);
    m3_i16_quantize_rows(x, MAXM, H, H, q16, H, s16);
    size_t rows[2] = {16, MAXM};
    for (int mi = 0; mi < 2; mi++) {
        size_t m = rows[mi];
        double best = 1e9, best_up = 0;
        for (int rep = 0; rep < 7; rep++) {
            double t0 = now(), t_up = 0;
            for (int l = 0; l < L; l++) {
                m3_i8_gemm(qkv[l], q, H, s, z, m, NULL, y, 3 * H, 0, m3_i8_panels(qkv[l]));
                m3_i8_gemm(o[l], q, H, s, z, m, NULL, y, H, 0, m3_i8_panels(o[l]));
                double a = now();
                m3_i16_gemm(up[l], q16, H, s16, m, NULL, y, F, 0, m3_i16_panels(up[l]));
                t_up += now() - a;
                m3_i8_gemm(down[l], q, F, s, z, m, NULL, y, H, 0, m3_i8_panels(down[l]));
            }
            double t = now() - t0;
            if (t < best) { best = t; best_up = t_up; }
        }
        double macs = (double)m * L * (4.0 * H * H + 2.0 * F * H + (double)F * H);
        printf("M=%3zu: pass %.1f ms (FFN up %.1f ms), %.0f GMAC/s\n", m, best * 1e3, best_up * 1e3, macs / best / 1e9);
    }
    return 0;
}
