// float32 linear layer for short inputs: y (m, n) = x (m, k) · Wᵀ + b with W (n, k) read in
// place, in the checkpoint's nn.Linear layout, with nothing packed.
//
// For a few rows (a query's tokens) a pass over the weights is bound by streaming them from
// memory, and sgemm's packing of W into panels (one extra write and read of every weight)
// only pays off when many rows reuse each panel. This kernel computes each output as a dot
// product of an x row and a W row, both contiguous in k, so W streams once, row by row,
// while x stays in L1/L2.
//
// Every output y[r, j] is summed in one fixed order whatever the shape, the tile or the
// column range: 8 partial sums s[l] over k ≡ l (mod 8), each by fused multiply-adds in
// ascending k, then ((s0+s4) + (s2+s6)) + ((s1+s5) + (s3+s7)), then + b[j]. So a row's
// outputs never depend on the other rows of the call, and the portable version (the same
// order with fmaf) gives the same bits.
//
// Threading is the caller's: split the columns j0 ..< j1 between cores.
#ifndef CM3LINEAR_H
#define CM3LINEAR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// y[r, j] (row stride ldy) = Σ_c x[r, c]·w[j, c] + bias[j] for r < m, j0 ≤ j < j1.
/// x (m, k) has row stride ldx, w (n, k) row stride ldw; bias may be NULL.
void m3_f32_linear(const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                   const float *bias, float *y, size_t ldy, size_t j0, size_t j1);

/// The portable loop m3_f32_linear falls back to without AVX2+FMA: the same summation
/// order, so the same bits (the reference the SIMD kernel is tested against).
void m3_f32_linear_reference(const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                             const float *bias, float *y, size_t ldy, size_t j0, size_t j1);

/// m3_f32_linear at most at instruction-set `level` (0 portable, 1 AVX2+FMA, 2 AVX-512F),
/// lowered to what this CPU has. Every level gives the same bits (the tests run each).
void m3_f32_linear_isa(int level, const float *x, size_t m, size_t k, size_t ldx, const float *w, size_t ldw,
                       const float *bias, float *y, size_t ldy, size_t j0, size_t j1);

/// The kernel m3_f32_linear runs on this CPU: 0 portable, 1 AVX2+FMA, 2 AVX-512F.
int m3_f32_linear_is_simd(void);

#ifdef __cplusplus
}
#endif
#endif
