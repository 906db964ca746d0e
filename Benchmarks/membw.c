// Read bandwidth of this machine: the floor under any encoder pass that streams its weights
// from DRAM (a short query reads every linear layer once: 1.21 GB in float32, 0.30 GB int8).
//
//   cc -O3 -march=native -fopenmp Benchmarks/membw.c -o /tmp/membw && /tmp/membw [MiB] [threads]
//
// Sums a buffer larger than the last-level cache (default 1,200 MiB, about the float32
// encoder's linear weights) on 1 and on `threads` threads; prints GB/s per repeat and the best.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1200;
    int threads = argc > 2 ? atoi(argv[2]) : omp_get_num_procs();
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a || n == 0) { fprintf(stderr, "cannot allocate %zu MiB\n", mib); return 1; }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f;  // touch every page first
    int counts[2] = {1, threads};
    for (int c = 0; c < 2; c++) {
        double best = 0, sink = 0;
        for (int r = 0; r < 7; r++) {
            double t = seconds();
            float sum = 0;
            #pragma omp parallel num_threads(counts[c]) reduction(+:sum)
            {
                // 32 independent sums per thread: the loop vectorises without reassociating.
                float lanes[32] = {0};
                #pragma omp for schedule(static)
                for (size_t b = 0; b < n / 32; b++)
                    for (int j = 0; j < 32; j++) lanes[j] += a[b * 32 + j];
                for (int j = 0; j < 32; j++) sum += lanes[j];
            }
            double gbs = (double)n * sizeof(float) / (seconds() - t) / 1e9;
            if (gbs > best) best = gbs;
            sink += sum;
        }
        printf("{\"threads\": %d, \"mib\": %zu, \"best_gb_per_s\": %.1f, \"ms_per_gb\": %.1f}  (sink %g)\n",
               counts[c], mib, best, 1000.0 / best, sink);
    }
    free(a);
    return 0;
}
