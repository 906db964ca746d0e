// Reduced-precision linear layers: y (m, n) = x (m, k) · Wᵀ + b with W (n, k) packed once
// at load, for the encoder's --precision int8 and bf16.
//
//   int8: W per output channel symmetric int8 (scale_w[n] = max|W[n,:]| / 127), activations
//         per row (token) u8 with a zero point, products summed exactly in int32 with
//         AVX512-VNNI vpdpbusd, then  y = scale_x[m]·scale_w[n]·(acc − zero[m]·Σ_k Wq[n,k]) + b.
//   bf16: W and x rounded to bfloat16 (nearest even), products summed in float32 with
//         AVX512-BF16 vdpbf16ps.
//
// Threading is the caller's: convert x once (m3_*_quantize_rows / m3_bf16_convert_rows, any
// row split), then call m3_*_gemm on disjoint ranges of column panels (m3_*_panels()), one per
// core. Without VNNI the int8 gemm runs an AVX2 kernel with the same results; without BF16
// (or, for int8, AVX2) the gemm functions run a portable scalar loop: correct, slow, meant
// for tests; the encoder then stays in float32 (m3_cpu_has_*, m3_i8_gemm_is_fast).
#ifndef CM3LOWPRECISION_H
#define CM3LOWPRECISION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU (and OS) can run the fast int8 kernel: AVX-512 F/BW/VL + VNNI.
int m3_cpu_has_avx512_vnni(void);
/// 1 when the CPU (and OS) can run the fast bf16 kernel: AVX-512 F/BW/VL + BF16.
int m3_cpu_has_avx512_bf16(void);
/// 1 when the CPU has AVX512-FP16 (Intel Sapphire Rapids and later; picks the int8 mode's
/// feed-forward up-projection scheme, see Precision.swift).
int m3_cpu_has_avx512_fp16(void);

// ---------------------------------------------------------------- int8

/// W packed for vpdpbusd: panels of 64 output columns, each (⌈k/4⌉, 64, 4) int8, plus
/// per-column scale and Σ_k Wq. Opaque; create with m3_i8_pack, free with m3_i8_free.
typedef struct m3_i8_weights m3_i8_weights;

/// Quantizes and packs W (n, k), row-major with row stride k. NULL when out of memory.
m3_i8_weights *m3_i8_pack(const float *w, size_t n, size_t k);
void m3_i8_free(m3_i8_weights *w);
/// Column panels (64 columns each, the last one possibly partial): the unit of work split.
size_t m3_i8_panels(const m3_i8_weights *w);
/// Bytes held by the packed weights (for memory reports).
size_t m3_i8_bytes(const m3_i8_weights *w);
/// The dequantization scale of output column j (tests derive their error bounds from it).
float m3_i8_weight_scale(const m3_i8_weights *w, size_t j);

/// A packing as three arrays the caller can write out and map back (a cache of packed
/// weights). m3_i8_layout gives their byte lengths for W (n, k): 0 when they overflow size_t.
int m3_i8_layout(size_t n, size_t k, size_t *packed_bytes, size_t *scale_bytes, size_t *colsum_bytes);
/// The arrays of a packing, of the m3_i8_layout lengths.
void m3_i8_parts(const m3_i8_weights *w, const void **packed, const void **scale, const void **colsum);
/// Packed weights over arrays the caller keeps alive (e.g. a mapped file), of the m3_i8_layout
/// lengths, 64-byte aligned; m3_i8_free then frees only the handle. NULL when misaligned or
/// out of memory.
m3_i8_weights *m3_i8_view(size_t n, size_t k, const void *packed, const void *scale, const void *colsum);
/// The panel layout (panel width, k group) as a number: a stored packing is only valid for
/// the same tag.
uint32_t m3_i8_layout_tag(void);

/// Row stride (bytes) of quantized activations with k columns: k rounded up to 4.
size_t m3_i8_row_stride(size_t k);

/// Quantizes x (rows, k) (row stride ldx floats) per row into q (rows, ldq bytes), with
/// x ≈ scale[r]·(q − zero[r]). asymmetric = 1: the row's [min(x,0), max(x,0)] onto 0…255
/// (best for skewed rows such as GELU outputs); 0: symmetric ±max|x| onto 1…255, zero 128.
/// Pad bytes up to m3_i8_row_stride(k) are written as 0.
void m3_i8_quantize_rows(const float *x, size_t rows, size_t k, size_t ldx,
                         uint8_t *q, size_t ldq, float *scale, int32_t *zero, int asymmetric);

/// y[:, panels begin..<end] (rows, n; row stride ldy) = dequant(q · Wqᵀ) + bias (n, or NULL).
/// AVX512-VNNI when the CPU has it, else AVX2 (vpmaddwd on widened values): the same exact
/// int32 sums and the same dequantization, so the same bits.
void m3_i8_gemm(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                size_t panel_begin, size_t panel_end);
/// 1 when m3_i8_gemm runs a SIMD kernel on this CPU (AVX512-VNNI or AVX2), 0 for the portable loop.
int m3_i8_gemm_is_fast(void);
/// The portable loop m3_i8_gemm falls back to (the reference the SIMD kernels are tested against).
void m3_i8_gemm_reference(const m3_i8_weights *w, const uint8_t *q, size_t ldq, const float *scale,
                          const int32_t *zero, size_t rows, const float *bias, float *y, size_t ldy,
                          size_t panel_begin, size_t panel_end);

// ---------------------------------------------------------------- int16
// W per output channel symmetric int16 (|q| ≤ 2047), activations per row symmetric int16
// (|q| ≤ m3_i16_activation_limit(k), 1024 at k = 1024), products summed exactly in int32
// (the limits keep every sum below 2³¹) with AVX512-VNNI vpdpwssd, else AVX2 vpmaddwd, else a
// portable loop: the same sums and the same dequantization, so the same bits on every path.
// About 11–12 bits a side for two int8 products' work; the int8 mode's feed-forward
// up-projection runs in it (Precision.swift).

/// W packed for vpdpwssd: panels of 64 output columns, each (⌈k/2⌉, 64, 2) int16, plus
/// per-column scales. Opaque; create with m3_i16_pack, free with m3_i16_free.
typedef struct m3_i16_weights m3_i16_weights;

/// Quantizes and packs W (n, k), row-major. NULL when out of memory or k too large for
/// exact int32 sums (m3_i16_activation_limit(k) == 0).
m3_i16_weights *m3_i16_pack(const float *w, size_t n, size_t k);
void m3_i16_free(m3_i16_weights *w);
size_t m3_i16_panels(const m3_i16_weights *w);
size_t m3_i16_bytes(const m3_i16_weights *w);
float m3_i16_weight_scale(const m3_i16_weights *w, size_t j);

/// As m3_i8_layout / m3_i8_parts / m3_i8_view / m3_i8_layout_tag, for the two int16 arrays
/// (panels, scales).
int m3_i16_layout(size_t n, size_t k, size_t *packed_bytes, size_t *scale_bytes);
void m3_i16_parts(const m3_i16_weights *w, const void **packed, const void **scale);
m3_i16_weights *m3_i16_view(size_t n, size_t k, const void *packed, const void *scale);
uint32_t m3_i16_layout_tag(void);

/// Row stride (int16 elements) of quantized activations with k columns: k rounded up to 2.
size_t m3_i16_row_stride(size_t k);
/// The largest |q| of quantized activations with k columns: ⌊(2³¹−1) / (k₂·2047)⌋ capped at
/// 32767; 0 when k is too large for exact sums.
int32_t m3_i16_activation_limit(size_t k);
/// x (rows, k) → q (rows, ldq int16) with x ≈ scale[r]·q, scale = max|x| / limit, round to
/// nearest even. Pad elements up to m3_i16_row_stride(k) are written as 0.
void m3_i16_quantize_rows(const float *x, size_t rows, size_t k, size_t ldx, int16_t *q, size_t ldq, float *scale);

/// y[:, panels begin..<end] (rows, n; row stride ldy) = scale[r]·sw[j]·(q · Wqᵀ) + bias (NULL: none).
void m3_i16_gemm(const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                 size_t rows, const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end);
/// m3_i16_gemm on the kernel of at most `max_level` (0 portable, 1 AVX2, 2 AVX512-VNNI) and
/// of this CPU: tests compare the paths.
void m3_i16_gemm_at(int max_level, const m3_i16_weights *w, const int16_t *q, size_t ldq, const float *scale,
                    size_t rows, const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end);
/// The kernel m3_i16_gemm runs on this CPU: 0 portable, 1 AVX2, 2 AVX512-VNNI.
int m3_i16_gemm_level(void);

// ---------------------------------------------------------------- bf16

/// W packed for vdpbf16ps: panels of 64 output columns, each (⌈k/2⌉, 64, 2) bfloat16.
typedef struct m3_bf16_weights m3_bf16_weights;

m3_bf16_weights *m3_bf16_pack(const float *w, size_t n, size_t k);
void m3_bf16_free(m3_bf16_weights *w);
size_t m3_bf16_panels(const m3_bf16_weights *w);
size_t m3_bf16_bytes(const m3_bf16_weights *w);

/// As m3_i8_layout / m3_i8_parts / m3_i8_view / m3_i8_layout_tag, for the one bf16 array.
int m3_bf16_layout(size_t n, size_t k, size_t *packed_bytes);
const void *m3_bf16_data(const m3_bf16_weights *w);
m3_bf16_weights *m3_bf16_view(size_t n, size_t k, const void *packed);
uint32_t m3_bf16_layout_tag(void);

/// Row stride (bf16 elements) of converted activations with k columns: k rounded up to 2.
size_t m3_bf16_row_stride(size_t k);

/// x (rows, k) → bfloat16 (rows, ldo), round to nearest even; the pad element is 0.
void m3_bf16_convert_rows(const float *x, size_t rows, size_t k, size_t ldx, uint16_t *out, size_t ldo);

/// y[:, panels begin..<end] = xb · Wbᵀ + bias (n, or NULL), float32 accumulation.
void m3_bf16_gemm(const m3_bf16_weights *w, const uint16_t *x, size_t ldx, size_t rows,
                  const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end);
void m3_bf16_gemm_reference(const m3_bf16_weights *w, const uint16_t *x, size_t ldx, size_t rows,
                            const float *bias, float *y, size_t ldy, size_t panel_begin, size_t panel_end);

#ifdef __cplusplus
}
#endif
#endif
