// mul_mat_vec (GEMV), ggml_mul_mat with a single activation column:
//   dst[i] = sum_k W[i][k] * x[k],  f32 accumulation, dequantizing W with ggml's formulas
//   (spec §3.6).
// Shapes (ggml ne order): weights [ncols, nrows] of `wtype` (f32, f16, q8_0, q4_0), rows
// `row_stride` bytes apart (0: contiguous, dtype_row_size); x [ncols] f32; dst [nrows] f32.
// ncols must be a multiple of the dtype's block size (32 for q8_0 / q4_0).
// Variants: "<...>_subgroup" (subgroupAdd reduction) where DeviceCaps::subgroup_arithmetic and
// the build has it, else the portable shared-memory reduction; `variant` forces one.
// Errors: invalid_argument for shapes/slices that do not fit; unsupported dtype; not_found
// when a forced variant is not in the build. Records only: the caller submits.
#pragma once

#include "core/dtype.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

enum class ReductionVariant { automatic, portable, subgroup };

struct MulMatVecOptions {
  uint64_t row_stride = 0;       // bytes; 0 = contiguous
  ReductionVariant variant = ReductionVariant::automatic;
  uint32_t workgroup_size = 0;   // a power of two; 0 = 64
};

// The shader variant name mul_mat_vec would use ("mul_mat_vec_q4_0_f32[_subgroup]").
Result<std::string> mul_mat_vec_variant(const Device& device, DType wtype, ReductionVariant variant);

Status mul_mat_vec(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols, int64_t nrows,
                   const BufferSlice& x, const BufferSlice& dst, const MulMatVecOptions& options = {});

}  // namespace tandem::gpu::ops
