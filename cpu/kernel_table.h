// KernelTable: one table of CPU kernel pointers per instruction-set level (cpu_features.h),
// filled once at start-up. The scalar table is the plain reference for every entry; the
// avx2, avx512 and neon tables must agree with it within the bounds stated per kernel.
//
// Conventions (all entries):
// * `k` is the number of elements of a row; quantized rows need k % 32 == 0 (QK4_0 == QK8_0).
//   Callers check this; kernels assume it.
// * A weight matrix is `n_rows` rows of `k` elements, ggml ne = [k, n_rows], row r at byte
//   `w + r * w_row_bytes` (any alignment). Activations for weight dtypes q4_0 and q8_0 are
//   q8_0 rows (quantize_row_q8_0); for f16, bf16 and f32 weights they are f32 rows.
// * Results accumulate in f32. Dot semantics follow ggml's ggml_vec_dot_* (ggml-cpu/
//   quants.c, vec.cpp): q4_0 x q8_0 = sum over blocks of d_w * d_x * (sum_j (q4_j - 8) * q8_j),
//   q8_0 x q8_0 = sum over blocks of d_w * d_x * (sum_j w_j * x_j), integer sums exact.
// * Accuracy of the SIMD tables against scalar: integer-dot kernels differ only by f32
//   reassociation (and per-lane scaling) of exact integer partial sums, |fast - scalar| <=
//   (n_blocks + 4) * 2^-23 * sum_b |d_w d_x| sum_j |q_w,j q_x,j|; float dots likewise with
//   (k + 4) * 2^-23 * sum_i |w_i x_i|;
//   axpy <= 2^-22 * (|y| + |a * w_i|) per element (fused vs separate multiply-add);
//   quantize_row_q8_0 is bit-exact; rope_neox uses the same angles (rope_neox_cache) but may
//   fuse a pair's products: 2^-22 (|x0| + |x1|); rms_norm and soft_max within 1e-5
//   relative (soft_max: vector exp, + 1e-7 absolute).
// * Threading: every kernel is re-entrant; the table is immutable after start-up.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/cpu_features.h"

namespace tandem::cpu {

// y[r] = dot(row r of w, x) for r < n_rows.
using GemvFn = void (*)(int64_t k, int64_t n_rows, const void* w, size_t w_row_bytes,
                        const void* x, float* y);
// y[t * y_stride + r] = dot(row r of w, x_t) for r < n_rows, t < n_tok, where
// x_t = x + t * x_row_bytes (bytes). Each weight row is read once for all n_tok tokens.
using GemmFn = void (*)(int64_t k, int64_t n_rows, const void* w, size_t w_row_bytes,
                        const void* x, size_t x_row_bytes, int64_t n_tok, float* y,
                        int64_t y_stride);
// Gathered rows: y[t * y_stride + idx[i]] = dot(row idx[i] of w, x_t) for i < n_idx (other
// columns of y untouched). The sparse up projection: only active neurons' rows are read.
using GemmRowsFn = void (*)(int64_t k, int64_t n_idx, const int32_t* idx, const void* w,
                            size_t w_row_bytes, const void* x, size_t x_row_bytes, int64_t n_tok,
                            float* y, int64_t y_stride);
// Gathered pairs: y[tok[j] * y_stride + idx[i]] = dot(row idx[i] of w, x_tok[j]) for i < n_idx
// and tok_off[i] <= j < tok_off[i + 1] (tokens of a row ascending, < n_tok; nothing else of y
// is written). The sparse up projection of a batch: only the (neuron, token) pairs whose gate
// is active. Each pair's value has the same bits as gemm_rows gives it (and as a batch of that
// token alone), on every table.
using GemmPairsFn = void (*)(int64_t k, int64_t n_idx, const int32_t* idx, const int32_t* tok_off,
                             const int32_t* tok, const void* w, size_t w_row_bytes, const void* x,
                             size_t x_row_bytes, int64_t n_tok, float* y, int64_t y_stride);
// The transposed expert down projection of one neuron chunk with 8-bit coefficients, one
// token: for each block b of 32 columns (d_i,b = the f16 scale of row idx[i]'s block b, w_i,j
// its integers: nibble - 8 for q4_0, qs for q8_0):
//   c_i = a[idx[i]] * d_i,b (f32),  s_b = max_i |c_i| / 127,  id = s_b != 0 ? 1 / s_b : 0,
//   q_i = nearbyint(c_i * id) (ties to even; |q_i| <= 127),
//   y[32 b + j] = (float)(sum_i q_i * w_i,(32 b + j)) * s_b   (the integer sum is exact).
// y (k floats) is written, not accumulated; n_idx == 0 writes zeros. 0 <= n_idx <=
// k_down_rows_max. Like ggml quantizing an activation to q8_0 before a quantized mul_mat, but
// the 8-bit quantity is a * d and its scale is shared by the chunk's rows per column block;
// rows with a == 0 change nothing, so a chunk's active rows give the same bits as all of its
// rows. Every table gives the same bits (integer sums, one rounding per step).
using DownRowsFn = void (*)(int64_t k, int64_t n_idx, const int32_t* idx, const void* w,
                            size_t w_row_bytes, const float* a, float* y);
inline constexpr int64_t k_down_rows_max = 256;
// y_t[i] += a[t] * dequant(row)[i] for i < k, t < n_tok, y_t = y + t * y_stride (floats).
// The row is read once for all tokens (the transposed expert down projection).
using AxpyFn = void (*)(int64_t k, int64_t n_tok, const float* a, const void* row, float* y,
                        int64_t y_stride);

struct KernelTable {
  Isa isa = Isa::scalar;

  // x (k f32) -> k/32 q8_0 blocks; bit-exact with cpu/quants.h quantize_row_q8_0
  // (ggml quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d)).
  void (*quantize_row_q8_0)(const float* x, void* y, int64_t k) = nullptr;

  // Dot products of one weight row with one activation row (k elements).
  float (*vec_dot_q4_0_q8_0)(int64_t k, const void* w, const void* x) = nullptr;
  float (*vec_dot_q8_0_q8_0)(int64_t k, const void* w, const void* x) = nullptr;
  float (*vec_dot_f16_f32)(int64_t k, const void* w, const float* x) = nullptr;
  float (*vec_dot_bf16_f32)(int64_t k, const void* w, const float* x) = nullptr;
  float (*vec_dot_f32)(int64_t k, const float* w, const float* x) = nullptr;

  // Many rows x one activation vector.
  GemvFn gemv_q4_0_q8_0 = nullptr;
  GemvFn gemv_q8_0_q8_0 = nullptr;
  GemvFn gemv_f16_f32 = nullptr;
  GemvFn gemv_bf16_f32 = nullptr;
  GemvFn gemv_f32 = nullptr;

  // Many rows x n_tok activation vectors (any n_tok >= 1; tiled internally).
  GemmFn gemm_q4_0_q8_0 = nullptr;
  GemmFn gemm_q8_0_q8_0 = nullptr;
  GemmFn gemm_f16_f32 = nullptr;
  GemmFn gemm_bf16_f32 = nullptr;
  GemmFn gemm_f32 = nullptr;

  // Listed rows only (sparse expert FFN).
  GemmRowsFn gemm_rows_q4_0_q8_0 = nullptr;
  GemmRowsFn gemm_rows_q8_0_q8_0 = nullptr;
  GemmPairsFn gemm_pairs_q4_0_q8_0 = nullptr;
  GemmPairsFn gemm_pairs_q8_0_q8_0 = nullptr;
  DownRowsFn down_rows_q4_0 = nullptr;
  DownRowsFn down_rows_q8_0 = nullptr;

  // q4_0 weight rows repacked as q4_0x16 (cpu/quants.h; k % 512 == 0) x q8_0 activations: the
  // semantics of the q4_0 entries on the rows before the repack. The scalar table unpacks each
  // row and calls its q4_0 kernel (the reference, slow; neon keeps these). The avx2 and avx512
  // tables run them natively (no byte permutes: 4 loads per 512 weights on avx512, 8 on avx2)
  // with the same bits as their own q4_0 entries (exact integer sums in the same lanes) and set
  // prefer_q4_0x16.
  GemvFn gemv_q4_0x16_q8_0 = nullptr;
  GemmFn gemm_q4_0x16_q8_0 = nullptr;
  GemmRowsFn gemm_rows_q4_0x16_q8_0 = nullptr;
  GemmPairsFn gemm_pairs_q4_0x16_q8_0 = nullptr;
  // down_rows on transposed down rows repacked as q4_0_split (cpu/quants.h): the bits of
  // down_rows_q4_0 on the rows before the repack, on every table (scalar: unpacks the rows).
  DownRowsFn down_rows_q4_0_split = nullptr;
  // Whether this table runs the repacked layouts above faster than ggml's (avx2, avx512): only then
  // should a loader repack (runtime/convert.h repack_for_cpu).
  bool prefer_q4_0x16 = false;

  // y += a * dequant(row), per row dtype, f32 coefficients.
  AxpyFn axpy_q4_0_f32 = nullptr;
  AxpyFn axpy_q8_0_f32 = nullptr;
  AxpyFn axpy_f32 = nullptr;

  // ggml_rms_norm followed by ggml_mul: y[i] = (x[i] * s) * w[i], s = 1 / sqrt(mean(x^2) + eps);
  // w may be nullptr (no weight). y may equal x.
  void (*rms_norm)(int64_t n, const float* x, const float* w, float eps, float* y) = nullptr;
  // ggml_soft_max_ext row: v[i] = x[i] * scale + (mask ? mask[i] : 0);
  // y[i] = exp(v[i] - max v) / sum exp(v - max v). mask may be nullptr and hold -inf.
  void (*soft_max)(int64_t n, const float* x, const float* mask, float scale, float* y) = nullptr;
  // ggml_rope (mode NEOX, no YaRN, freq_scale 1), in place on one token's n_head heads of
  // head_dim floats (x[h * head_dim + i]): for i < n_rot/2, theta_i = pos * base^(-2i/n_rot)
  // (computed as ggml: theta *= base^(-2/n_rot) per pair), pair (x[i], x[i + n_rot/2]) ->
  // (x0 cos - x1 sin, x0 sin + x1 cos); dims >= n_rot unchanged. Spec §2.3.
  void (*rope_neox)(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
                    float freq_base) = nullptr;
};

// Table for the best ISA the host supports (best_isa(), honours TANDEM_MAX_ISA).
const KernelTable& kernels();
// Table for `isa`, or nullptr when the host cannot run it or the build lacks it.
const KernelTable* kernels_for(Isa isa);

}  // namespace tandem::cpu
