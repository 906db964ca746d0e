// The floor under the encoder's int8 short path on two cores: one pass's linear layers (as in
// int8_pass.c: 24 layers of QKV, output, FFN up in int16, FFN down) split over 2 threads with a
// spin barrier after each layer step, either as two static halves of the column panels or as
// chunks of `chunk` panels taken from a shared counter (the encoder's way). Wall time, best of
// 9, for 16 rows (a query) and 128 (a batch of 8). Compare with `m3bench encoder --precision
// int8 --length 16 --count 1|8`: what the encoder adds is conversions, norms, attention, GELU
// and hand-offs.
//
//   clang -O2 -pthread -ISources/CM3Kernels/include Benchmarks/int8_pass_threads.c \
//       Sources/CM3Kernels/gemm_int8.c Sources/CM3Kernels/gemm_int16.c -lm -o /tmp/int8_pass_threads
//   /tmp/int8_pass_threads 0   # static halves;  /tmp/int8_pass_threads 4: chunks of 4 panels
#include "CM3LowPrecision.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { L = 24, H = 1024, F = 4096, MAXM = 128, T = 2 };
static m3_i8_weights *qkv[L], *o[L], *down[L];
static m3_i16_weights *up[L];
static uint8_t *q;
static int16_t *q16;
static float *y, s8[MAXM], s16[MAXM];
static int32_t z[MAXM];
static size_t M, chunk;
static atomic_size_t counter[4 * L];
static atomic_int arrived;

static void gemm(int kind, int l, size_t a, size_t b) {
    if (kind == 0) m3_i8_gemm(qkv[l], q, H, s8, z, M, NULL, y, 3 * H, a, b);
    else if (kind == 1) m3_i8_gemm(o[l], q, H, s8, z, M, NULL, y, H, a, b);
    else if (kind == 2) m3_i16_gemm(up[l], q16, H, s16, M, NULL, y, F, a, b);
    else m3_i8_gemm(down[l], q, F, s8, z, M, NULL, y, H, a, b);
}

static void *work(void *arg) {
    int id = (int)(size_t)arg, step = 0;
    for (int l = 0; l < L; l++)
        for (int kind = 0; kind < 4; kind++, step++) {
            size_t panels = kind == 0 ? m3_i8_panels(qkv[l]) : kind == 1 ? m3_i8_panels(o[l])
                          : kind == 2 ? m3_i16_panels(up[l]) : m3_i8_panels(down[l]);
            if (chunk == 0) {
                size_t per = (panels + T - 1) / T, a = id * per, b = a + per < panels ? a + per : panels;
                if (a < b) gemm(kind, l, a, b);
            } else {
                for (;;) {
                    size_t a = atomic_fetch_add(&counter[step], 1) * chunk;
                    if (a >= panels) break;
                    gemm(kind, l, a, a + chunk < panels ? a + chunk : panels);
                }
            }
            atomic_fetch_add(&arrived, 1);
            while (atomic_load(&arrived) < T * (step + 1)) {}
        }
    return NULL;
}

int main(int argc, char **argv) {
    chunk = argc > 1 ? (size_t)atoi(argv[1]) : 0;
    float *w = malloc(sizeof(float) * F * H), *x = malloc(sizeof(float) * MAXM * F);
    q = malloc((size_t)MAXM * F);
    q16 = malloc(sizeof(int16_t) * MAXM * H);
    y = malloc(sizeof(float) * MAXM * F);
    if (!w || !x || !q || !q16 || !y) return 1;
    for (size_t i = 0; i < (size_t)F * H; i++) w[i] = ((float)((i * 2654435761u) % 2001) - 1000) / 20000;
    for (int l = 0; l < L; l++) {
        qkv[l] = m3_i8_pack(w, 3 * H, H); o[l] = m3_i8_pack(w, H, H); up[l] = m3_i16_pack(w, F, H);
        down[l] = m3_i8_pack(w, H, F);
        if (!qkv[l] || !o[l] || !up[l] || !down[l]) return 1;
    }
    for (size_t i = 0; i < (size_t)MAXM * F; i++) x[i] = (float)((i * 40503u) % 1000) / 500 - 1;
    m3_i8_quantize_rows(x, MAXM, F, F, q, F, s8, z, 1);
    m3_i16_quantize_rows(x, MAXM, H, H, q16, H, s16);
    size_t rows[2] = {16, MAXM};
    for (int mi = 0; mi < 2; mi++) {
        M = rows[mi];
        double best = 1e9;
        for (int rep = 0; rep < 9; rep++) {
            for (int i = 0; i < 4 * L; i++) atomic_store(&counter[i], 0);
            atomic_store(&arrived, 0);
            pthread_t other;
            double t0 = wall();
            if (pthread_create(&other, NULL, work, (void *)1) != 0) return 1;
            work(0);
            pthread_join(other, NULL);
            double t = wall() - t0;
            if (t < best) best = t;
        }
        printf("2 threads, %s, M=%3zu: pass %.1f ms\n", chunk ? "chunks from a counter" : "static halves", M, best * 1e3);
    }
    return 0;
}
