// get_rows, ggml_get_rows: dst row i = row ids[i] of src, dequantized to f32 (token embeddings:
// token_embd.weight rows by token id).
// Shapes (ggml ne order): src [ncols, nrows] of src_type (f32, f16, q8_0, q4_0), contiguous;
// ids [m] i32, a DEVICE buffer; dst [ncols, m] f32. ncols must be a multiple of the dtype's block
// size. Dequantization as ggml (spec §3.6, shaders/common/weights.glsl).
// An id outside [0, nrows) makes its dst row NaN (visible, never an out-of-bounds read).
// A table larger than the device's maxStorageBufferRange (lavapipe: 128 MiB; the 4B model's
// q8_0 token_embd is 237 MiB) is bound in parts, one dispatch per part, each writing the rows
// whose ids fall in it. `max_part_bytes` (tests) caps a part further; 0 = the device limit.
// Variants "get_rows_{f32,f16,q8_0,q4_0}_f32".
// Errors: invalid_argument for shapes/slices that do not fit; unsupported for another dtype.
// Records only.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status get_rows(CommandRecorder& rec, DType src_type, const BufferSlice& src, int64_t ncols,
                int64_t nrows, const BufferSlice& ids, int64_t m, const BufferSlice& dst,
                uint64_t max_part_bytes = 0);

}  // namespace tandem::gpu::ops
