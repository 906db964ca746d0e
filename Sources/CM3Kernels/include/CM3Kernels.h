// Hot loops that BLAS does not cover. Each kernel has a portable version and, where it
// pays, an AVX-512/AVX2 version chosen at run time by CPU features (the package itself
// compiles for baseline x86-64, so no build flag is needed by apps that depend on it).
#ifndef CM3KERNELS_H
#define CM3KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// x (rows, cols) ← LayerNorm(x + residual) · gamma + beta, per row; residual may be NULL.
/// Mean and variance are summed in double.
void m3_add_layernorm(float *x, const float *residual, size_t rows, size_t cols,
                      const float *gamma, const float *beta, float eps);
/// Its portable version (the reference the SIMD one is tested against).
void m3_add_layernorm_reference(float *x, const float *residual, size_t rows, size_t cols,
                                const float *gamma, const float *beta, float eps);

/// x (rows, cols) += bias (cols) on every row.
void m3_add_bias(float *x, const float *bias, size_t rows, size_t cols);

/// x (rows, cols) ← GELU(x + bias) with the exact erf form: 0.5·v·(1 + erf(v/√2)).
void m3_bias_gelu(float *x, const float *bias, size_t rows, size_t cols);

/// s (rows, cols) ← softmax over each row, in place (max-subtracted, float accumulation).
void m3_softmax_rows(float *s, size_t rows, size_t cols);

/// Scaled dot-product attention of one head of one short sequence:
/// out[i] (d) = Σ_j p_ij · v[j],  p_i = softmax_j(scale · q[i]·k[j]),  i, j < len.
/// q, k, v, out: len rows of d floats, row stride ld (a head's columns of the packed (T, H)
/// matrices). scores: len floats of scratch. Rows of out depend on their own q row only.
void m3_attention_head(const float *q, const float *k, const float *v, size_t ld, size_t len,
                       size_t d, float scale, float *out, float *scores);
/// Plain loops, the reference m3_attention_head is tested against.
void m3_attention_head_reference(const float *q, const float *k, const float *v, size_t ld, size_t len,
                                 size_t d, float scale, float *out, float *scores);

/// Each row of x (rows, cols) scaled to unit L2 norm (rows of norm 0 stay 0, like torch's
/// F.normalize with eps 1e-12).
void m3_l2_normalize_rows(float *x, size_t rows, size_t cols);

/// IEEE half / bfloat16 → float32.
void m3_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void m3_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

/// Dot product of two float vectors.
float m3_dot(const float *a, const float *b, size_t n);

/// The portable versions of the two kernels above (the reference the SIMD ones are tested against).
void m3_bias_gelu_reference(float *x, const float *bias, size_t rows, size_t cols);
void m3_softmax_rows_reference(float *s, size_t rows, size_t cols);

/// Which instruction set the dispatched kernels use: 0 portable, 1 AVX2+FMA, 2 AVX-512.
int m3_kernel_level(void);
/// OpenBLAS kernel sets this CPU can run: 2 Skylake-X, 1 Haswell, 0 neither.
int m3_cpu_blas_class(void);

#ifdef __cplusplus
}
#endif
#endif

// The index kernels (M3Index) live in their own header; this umbrella header must include
// it for Swift to see it (SwiftPM uses include/<Target>.h as the umbrella when it exists).
#include "CM3IndexKernels.h"
// MaxSim over compressed ColBERT rows (int8, sign bits, product quantisation).
#include "CM3CompressedKernels.h"
// Likewise the int8 / bfloat16 linear-layer kernels (M3Model's --precision)
#include "CM3LowPrecision.h"
// and the float32 linear layer of short inputs.
#include "CM3Linear.h"
// Per-node spin locks of the parallel HNSW construction.
#include "CM3Sync.h"
// The spinning thread pool of the encoder's parallel steps.
#include "CM3Parallel.h"
