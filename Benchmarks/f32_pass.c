// One encoder pass's float32 linear layers through the short path's kernel (m3_f32_linear):
// 24 layers of BGE-M3 size (q, k, v, attention output as one 4096 × 1024 matrix, FFN up
// 4096 × 1024, FFN down 1024 × 4096: 1.2 GB, more than the L3 holds), `rows` x rows, split
// over `threads` threads by columns as the encoder does. Best of 5, by the process's CPU
// clock (the machine is shared: wall time would count other processes' slices).
//
//   clang -O3 -pthread -ISources/CM3Kernels/include Benchmarks/f32_pass.c \
//       Sources/CM3Kernels/gemm_f32.c -lm -o /tmp/f32_pass && /tmp/f32_pass 16 1
//   # another kernel: git show REV:Sources/CM3Kernels/gemm_f32.c > /tmp/old.c, build against it
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "CM3Linear.h"

enum { LAYERS = 24, HIDDEN = 1024, FFN = 4096 };

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const float *x, *w;
    float *y;
    size_t m, k, n, j0, j1;
} part;

static void *run_part(void *arg) {
    part *p = arg;
    m3_f32_linear(p->x, p->m, p->k, p->k, p->w, p->k, NULL, p->y, p->n, p->j0, p->j1);
    return NULL;
}

/// y (m, n) = x (m, k) · Wᵀ, columns split over `threads` in multiples of 6 (the kernel's group).
static void linear(const float *x, size_t m, size_t k, const float *w, size_t n, float *y, int threads) {
    pthread_t t[8];
    part p[8];
    for (int i = 0; i < threads; i++) {
        size_t j0 = n * (size_t)i / (size_t)threads / 6 * 6;
        size_t j1 = i == threads - 1 ? n : n * (size_t)(i + 1) / (size_t)threads / 6 * 6;
        p[i] = (part){x, w, y, m, k, n, j0, j1};
        pthread_create(&t[i], NULL, run_part, &p[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

static float *filled(size_t count, unsigned seed) {
    float *v = malloc(count * sizeof(float));
    if (!v) { perror("malloc"); exit(1); }
    for (size_t i = 0; i < count; i++) v[i] = (float)((i * 2654435761u + seed) % 1000) * 1e-3f - 0.5f;
    return v;
}

int main(int argc, char **argv) {
    size_t rows = argc > 1 ? (size_t)atoi(argv[1]) : 16;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (rows == 0 || threads < 1 || threads > 8) { fprintf(stderr, "usage: f32_pass ROWS [THREADS ≤ 8]\n"); return 2; }
    float *attention[LAYERS], *up[LAYERS], *down[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        attention[l] = filled(4 * HIDDEN * HIDDEN, l);
        up[l] = filled((size_t)FFN * HIDDEN, l + 100);
        down[l] = filled((size_t)HIDDEN * FFN, l + 200);
    }
    float *x = filled(rows * FFN, 7), *y = filled(rows * FFN, 8);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cpu_seconds();
        for (int l = 0; l < LAYERS; l++) {
            linear(x, rows, HIDDEN, attention[l], 4 * HIDDEN, y, threads);
            linear(x, rows, HIDDEN, up[l], FFN, y, threads);
            linear(x, rows, FFN, down[l], HIDDEN, y, threads);
        }
        double t = cpu_seconds() - t0;
        if (t < best) best = t;
    }
    double flops = 2.0 * (double)rows * LAYERS * (4.0 * HIDDEN * HIDDEN + 2.0 * HIDDEN * FFN);
    printf("rows %zu, threads %d: %.1f ms CPU, %.1f GFLOP/s per CPU second\n", rows, threads, best * 1e3,
           flops / best / 1e9);
    return 0;
}
