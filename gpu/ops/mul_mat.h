// mul_mat (matrix form), ggml_mul_mat(weights, src) for a batch of activation rows:
//   dst[j][i] = sum_k W[i][k] * src[j][k],  f32 accumulation, ggml dequantization (spec §3.6).
// Shapes (ggml ne order): weights [K, M] of `wtype` (f32, f16, q8_0, q4_0), rows `row_stride`
// bytes apart (0: contiguous); src [K, N] f32 contiguous; dst [M, N] f32 contiguous.
// K must be a multiple of the dtype's block size. Tiled BM x BN per workgroup (specialization
// constants; BM*BN a power of two within the device's invocation limit), BK-wide K slices.
// Errors: invalid_argument / unsupported as mul_mat_vec. Records only.
#pragma once

#include "core/dtype.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

struct MulMatOptions {
  uint64_t row_stride = 0;  // bytes; 0 = contiguous
  uint32_t tile_m = 16;     // BM
  uint32_t tile_n = 16;     // BN
  uint32_t tile_k = 32;     // BK
};

Status mul_mat(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t K, int64_t M,
               const BufferSlice& src, int64_t N, const BufferSlice& dst, const MulMatOptions& options = {});

}  // namespace tandem::gpu::ops
