// mul_mat_vec (GEMV), ggml_mul_mat with a single activation column:
//   dst[i] = sum_k W[i][k] * x[k],  f32 accumulation, dequantizing W with ggml's formulas
//   (spec §3.6).
// Shapes (ggml ne order): weights [ncols, nrows] of `wtype` (f32, f16, q8_0, q4_0), rows
// `row_stride` bytes apart (0: contiguous, dtype_row_size); x [ncols] f32; dst [nrows] f32.
// ncols must be a multiple of the dtype's block size (32 for q8_0 / q4_0).
// Variants (gpu/ops/shader_variant.h), "mul_mat_vec_<dtype>_f32" + suffix:
//   portable   shared-memory reduction, f32 arithmetic (every dtype)
//   _subgroup  subgroupAdd reduction (every dtype)
//   _intdot    q8_0 / q4_0: x is first quantized to q8_1 blocks (quantize_q8_1.h: ggml's q8_0
//              activation quantization, as the CPU kernels do) in `q8_1`, then packed int8x4
//              dot products per block. Differs from the f32 result by the activation
//              quantization (NMSE ~1e-5 against f64, see mul_mat_vec_test.cpp).
//   _fp16      f16 weights: products in f16 (x rounded to f16; |x| must stay below 65504),
//              summed in f16 over 8 elements, then in f32. NMSE ~1e-7 against f64.
// Automatic: intdot (only when a q8_1 slice is given) > subgroup > portable, among what the
// build and the device have (fp16 only on request); TANDEM_VK_PORTABLE_SHADERS=1 forces portable.
// Errors: invalid_argument for shapes/slices that do not fit (an explicit intdot request
// without a large enough q8_1 slice); unsupported dtype; not_found when a forced variant is
// not in the build or not on the device. Records only: the caller submits.
#pragma once

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::ops {

struct MulMatVecOptions {
  uint64_t row_stride = 0;       // bytes; 0 = contiguous
  ReductionVariant variant = ReductionVariant::automatic;
  uint32_t workgroup_size = 0;   // a power of two; 0 = 64
  // Scratch for the q8_1 activations of the _intdot variants: at least q8_1_bytes(ncols, 1)
  // bytes, 4-byte aligned. Empty: automatic selection never picks intdot.
  BufferSlice q8_1;
  // `q8_1` already holds x quantized (by quantize_q8_1 or an earlier intdot mat-vec over the
  // same x in this recording): the quantize dispatch is skipped.
  bool q8_1_ready = false;
};

// The shader variant name mul_mat_vec would use ("mul_mat_vec_q4_0_f32[_subgroup|_intdot]"),
// given whether a q8_1 scratch slice is passed (automatic picks intdot only with one).
Result<std::string> mul_mat_vec_variant(const Device& device, DType wtype, ReductionVariant variant,
                                        bool has_q8_1 = false);

// The variants this device can run for `wtype` (portable first): what conformance tests and
// benchmarks iterate over.
std::vector<ShaderVariant> mul_mat_vec_variants(const Device& device, DType wtype);

Status mul_mat_vec(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols, int64_t nrows,
                   const BufferSlice& x, const BufferSlice& dst, const MulMatVecOptions& options = {});

}  // namespace tandem::gpu::ops
