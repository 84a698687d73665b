// soft_max, ggml_soft_max_ext(x, mask, scale, max_bias = 0): per row r,
//   v[c] = x[r][c] * scale + (mask ? mask[r % mask_nrows][c] : 0)
//   dst[r][c] = exp(v[c] - max v) / sum_c exp(v[c] - max v)
// Shapes (ggml ne order): x, dst [ncols, nrows] f32 contiguous; mask [ncols, mask_nrows] f32
// (e.g. a causal mask with -inf, broadcast over heads). Records only.
#pragma once

#include <optional>

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

struct SoftMaxMask {
  BufferSlice mask;
  int64_t nrows = 1;
};

Status soft_max(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows, float scale,
                const std::optional<SoftMaxMask>& mask, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
