// oneDNN 2.6 matmul on the encoder's linear-layer shapes, for the trade-off against our own
// int8 / bf16 kernels (m3bench gemm). Standalone: never linked into m3search.
//
//   cc -O2 Benchmarks/onednn/gemm_onednn.c -ldnnl -o Benchmarks/work/gemm_onednn
//   OMP_NUM_THREADS=2 Benchmarks/work/gemm_onednn M N K repeats
//
// Prints one JSON line: median seconds of y (M, N) f32 = x (M, K) · Wᵀ for
//   int8: u8 x · s8 W (prepacked in oneDNN's chosen layout), s32 sums, per-column output
//         scales (the per-row activation scale and zero point are left out: cheap epilogue);
//   bf16: bf16 x · bf16 W (prepacked), f32 output.
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(f) do { dnnl_status_t s_ = (f); if (s_ != dnnl_success) { \
    fprintf(stderr, "%s failed: %d (line %d)\n", #f, (int)s_, __LINE__); exit(1); } } while (0)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static dnnl_memory_t make_memory(const dnnl_memory_desc_t *md, void *data) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, data ? data : DNNL_MEMORY_ALLOCATE));
    return m;
}

// Times one matmul; `wt` is W as (K, N) with tag ba, i.e. our row-major W (N, K).
static double run(int64_t M, int64_t N, int64_t K, dnnl_data_type_t xt, dnnl_data_type_t wt_type,
                  void *x, void *w, const float *scales, int repeats) {
    dnnl_memory_desc_t x_md, w_user_md, w_md, y_md;
    dnnl_dims_t xd = {M, K}, wd = {K, N}, yd = {M, N};
    CHECK(dnnl_memory_desc_init_by_tag(&x_md, 2, xd, xt, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w_user_md, 2, wd, wt_type, dnnl_ba));
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, 2, wd, wt_type, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&y_md, 2, yd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &x_md, &w_md, NULL, &y_md));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    if (scales) CHECK(dnnl_primitive_attr_set_output_scales(attr, N, 1 << 1, scales));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    const dnnl_memory_desc_t *w_chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);

    // Prepack W once into the layout the primitive chose (as we do at load).
    dnnl_memory_t w_user = make_memory(&w_user_md, w), w_mem = make_memory(w_chosen, NULL);
    dnnl_primitive_desc_t rpd;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &w_user_md, engine, w_chosen, engine, NULL));
    dnnl_primitive_t reorder;
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, w_user}, {DNNL_ARG_TO, w_mem}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
    CHECK(dnnl_stream_wait(stream));

    dnnl_memory_t x_mem = make_memory(&x_md, x), y_mem = make_memory(&y_md, NULL);
    dnnl_primitive_t mm;
    CHECK(dnnl_primitive_create(&mm, pd));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem}};
    double *t = malloc(sizeof(double) * (size_t)repeats);
    for (int r = -1; r < repeats; r++) {  // r = -1: warm-up
        double t0 = now();
        CHECK(dnnl_primitive_execute(mm, stream, 3, args));
        CHECK(dnnl_stream_wait(stream));
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, (size_t)repeats, sizeof(double), cmp);
    double median = t[repeats / 2];
    free(t);
    dnnl_primitive_destroy(mm); dnnl_primitive_destroy(reorder);
    dnnl_primitive_desc_destroy(pd); dnnl_primitive_desc_destroy(rpd); dnnl_primitive_attr_destroy(attr);
    dnnl_memory_destroy(w_user); dnnl_memory_destroy(w_mem); dnnl_memory_destroy(x_mem); dnnl_memory_destroy(y_mem);
    return median;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s M N K [repeats]\n", argv[0]); return 2; }
    int64_t M = atoll(argv[1]), N = atoll(argv[2]), K = atoll(argv[3]);
    int repeats = argc > 4 ? atoi(argv[4]) : 5;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    uint8_t *xu = malloc((size_t)(M * K));
    int8_t *ws = malloc((size_t)(N * K));
    uint16_t *xb = malloc((size_t)(M * K) * 2), *wb = malloc((size_t)(N * K) * 2);
    float *scales = malloc(sizeof(float) * (size_t)N);
    srand(1);
    for (int64_t i = 0; i < M * K; i++) { xu[i] = (uint8_t)(rand() & 255); xb[i] = 0x3F80 + (rand() & 0x7F); }
    for (int64_t i = 0; i < N * K; i++) { ws[i] = (int8_t)(rand() % 255 - 127); wb[i] = 0x3C00 + (rand() & 0x7F); }
    for (int64_t i = 0; i < N; i++) scales[i] = 1e-4f;
    double ti = run(M, N, K, dnnl_u8, dnnl_s8, xu, ws, scales, repeats);
    double tb = run(M, N, K, dnnl_bf16, dnnl_bf16, xb, wb, NULL, repeats);
    const dnnl_version_t *v = dnnl_version();
    printf("{\"M\":%lld,\"N\":%lld,\"K\":%lld,\"int8_s\":%.6g,\"bf16_s\":%.6g,\"onednn\":\"%d.%d.%d\",\"isa\":%d}\n",
           (long long)M, (long long)N, (long long)K, ti, tb, v->major, v->minor, v->patch, (int)dnnl_get_effective_cpu_isa());
    return 0;
}
