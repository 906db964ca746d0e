// sgemm GFLOP/s under the kernel set OpenBLAS picks, to compare its choices on this CPU
// (BENCHMARKS.md, "OpenBLAS's kernel choice"):
//
//   cc -O2 Benchmarks/blas_cores.c -o /tmp/blas_cores -lopenblas
//   env -u OPENBLAS_CORETYPE /tmp/blas_cores     # OpenBLAS's own choice
//   for c in PRESCOTT HASWELL SKYLAKEX COOPERLAKE; do OPENBLAS_CORETYPE=$c /tmp/blas_cores; done
//
// x (1024, 1024) · Wᵀ (1024 × 1024, row-major W as the encoder's linear layers hold it), best of 7.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *openblas_get_corename(void);

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    const int n = 1024;
    float *x = malloc(sizeof(float) * 3 * n * n);
    if (!x) return 1;
    float *w = x + n * n, *y = w + n * n;
    for (int i = 0; i < 2 * n * n; i++) x[i] = (float)(i % 7) * 0.1f - 0.3f;
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        double t = seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, x, n, w, n, 0, y, n);
        t = seconds() - t;
        if (t < best) best = t;
    }
    printf("{\"core\": \"%s\", \"threads\": %d, \"sgemm_gflops\": %.1f}\n", openblas_get_corename(),
           openblas_get_num_threads(), 2.0 * n * n * n / best / 1e9);
    free(x);
    return 0;
}
