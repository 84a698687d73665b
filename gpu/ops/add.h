// add, ggml_add with b broadcast over rows: dst[r][c] = a[r][c] + b[r % b_nrows][c].
// Shapes (ggml ne order): a, dst [ncols, nrows] f32 contiguous; b [ncols, b_nrows] f32.
// dst may be the same slice as a (in-place residual add). Records only.
#pragma once

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status add(CommandRecorder& rec, const BufferSlice& a, const BufferSlice& b, int64_t ncols, int64_t nrows,
           int64_t b_nrows, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
