// One encoder pass's float32 linear layers through the short path's kernel (m3_f32_linear):
// 24 layers of BGE-M3 size (q, k, v, attention output as one 4096 × 1024 matrix, FFN up
// 4096 × 1024, FFN down 1024 × 4096: 1.2 GB, more than the L3 holds), `rows` x rows, split
// over `threads` threads as the encoder's linearShort does: columns cut into chunks of
// max(48, n / (8 · threads)) rounded up to a multiple of 3, which the threads take in turn.
// Every buffer is 64-byte aligned, as the encoder's scratch and the mapped checkpoint are.
// Prints the best of 7 by wall clock and by the process's CPU clock (the machine is shared:
// wall time counts other processes' slices; the workers wait on barriers, not spinning).
//
//   # the kernel with the flags of `swift build -c release` (-O2, frame pointers kept):
//   clang -O2 -fno-omit-frame-pointer -pthread -ISources/CM3Kernels/include Benchmarks/f32_pass.c \
//       Sources/CM3Kernels/gemm_f32.c -lm -o /tmp/f32_pass && /tmp/f32_pass 16 2
//   # another kernel: git show REV:Sources/CM3Kernels/gemm_f32.c > /tmp/old.c, build against it
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "CM3Linear.h"

enum { LAYERS = 24, HIDDEN = 1024, FFN = 4096, MAX_THREADS = 8, REPEATS = 7 };

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/// One layer's work, shared by the threads: they take chunks [j, j + width) in turn.
static struct {
    const float *x, *w;
    float *y;
    size_t m, k, n, width;
    size_t next;  // the next chunk's first column (atomic)
    int quit;
} job;
static pthread_barrier_t start, done;

static void run_chunks(void) {
    for (;;) {
        size_t j0 = __atomic_fetch_add(&job.next, job.width, __ATOMIC_RELAXED);
        if (j0 >= job.n) return;
        size_t j1 = j0 + job.width < job.n ? j0 + job.width : job.n;
        m3_f32_linear(job.x, job.m, job.k, job.k, job.w, job.k, NULL, job.y, job.n, j0, j1);
    }
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        pthread_barrier_wait(&start);
        if (job.quit) return NULL;
        run_chunks();
        pthread_barrier_wait(&done);
    }
}

/// y (m, n) = x (m, k) · Wᵀ on the calling thread and the workers.
static void linear(const float *x, size_t m, size_t k, const float *w, size_t n, float *y, int threads) {
    size_t target = n / (8 * (size_t)threads);
    if (target < 48) target = 48;
    job.x = x, job.w = w, job.y = y, job.m = m, job.k = k, job.n = n;
    job.width = (target + 2) / 3 * 3;
    job.next = 0;
    if (threads == 1) { run_chunks(); return; }
    pthread_barrier_wait(&start);
    run_chunks();
    pthread_barrier_wait(&done);
}

static float *filled(size_t count, unsigned seed) {
    float *v = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    if (!v) { perror("aligned_alloc"); exit(1); }
    for (size_t i = 0; i < count; i++) v[i] = (float)((i * 2654435761u + seed) % 1000) * 1e-3f - 0.5f;
    return v;
}

int main(int argc, char **argv) {
    size_t rows = argc > 1 ? (size_t)atoi(argv[1]) : 16;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    // DISTINCT < 24: layers share weights, so they come from the L3 (what the kernel does
    // when the weight stream is not the limit).
    int distinct = argc > 3 ? atoi(argv[3]) : LAYERS;
    if (rows == 0 || threads < 1 || threads > MAX_THREADS || distinct < 1 || distinct > LAYERS) {
        fprintf(stderr, "usage: f32_pass ROWS [THREADS ≤ %d [DISTINCT LAYERS ≤ 24]]\n", MAX_THREADS);
        return 2;
    }
    float *attention[LAYERS], *up[LAYERS], *down[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        if (l >= distinct) {
            attention[l] = attention[l % distinct], up[l] = up[l % distinct], down[l] = down[l % distinct];
            continue;
        }
        attention[l] = filled(4 * HIDDEN * HIDDEN, l);
        up[l] = filled((size_t)FFN * HIDDEN, l + 100);
        down[l] = filled((size_t)HIDDEN * FFN, l + 200);
    }
    float *x = filled(rows * FFN, 7), *y = filled(rows * FFN, 8);
    pthread_t t[MAX_THREADS];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    pthread_barrier_init(&done, NULL, (unsigned)threads);
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
    double best_wall = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < REPEATS; rep++) {
        double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
        for (int l = 0; l < LAYERS; l++) {
            linear(x, rows, HIDDEN, attention[l], 4 * HIDDEN, y, threads);
            linear(x, rows, HIDDEN, up[l], FFN, y, threads);
            linear(x, rows, FFN, down[l], HIDDEN, y, threads);
        }
        double wall = seconds(CLOCK_MONOTONIC) - w0, cpu = seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (wall < best_wall) best_wall = wall;
        if (cpu < best_cpu) best_cpu = cpu;
    }
    if (threads > 1) {
        job.quit = 1;
        pthread_barrier_wait(&start);
        for (int i = 1; i < threads; i++) pthread_join(t[i], NULL);
    }
    double flops = 2.0 * (double)rows * LAYERS * (4.0 * HIDDEN * HIDDEN + 2.0 * HIDDEN * FFN);
    double bytes = (double)LAYERS * (4.0 * HIDDEN * HIDDEN + 2.0 * HIDDEN * FFN) * sizeof(float);
    printf("rows %zu, threads %d, %d distinct layers: %.1f ms wall (%.1f GB/s of weights), %.1f ms CPU (%.1f GFLOP/s per CPU second)\n",
           rows, threads, distinct, best_wall * 1e3, bytes / best_wall / 1e9, best_cpu * 1e3, flops / best_cpu / 1e9);
    return 0;
}
