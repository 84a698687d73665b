// rms_norm, ggml_rms_norm (+ the ggml_mul by a norm weight that llama.cpp applies after it):
//   dst[r][c] = x[r][c] / sqrt(mean_c(x[r][c]^2) + eps) * (weight ? weight[c] : 1)
// Shapes (ggml ne order): x, dst [ncols, nrows] f32 contiguous; weight [ncols] f32 or none.
// dst may be the same slice as x. Errors: invalid_argument for slices that do not fit. Records only.
#pragma once

#include <optional>

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status rms_norm(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows, float eps,
                const std::optional<BufferSlice>& weight, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
