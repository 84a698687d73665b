// set_rows, ggml_set_rows: dst row rows[i] = src row i converted to dst_type, for i < m — the
// KV-cache store (rows = the positions of the new tokens).
// Shapes (ggml ne order): src [ncols, m] f32 contiguous; rows [m] i32, a DEVICE buffer (read by
// the shader, so a recorded command buffer can be replayed after the host rewrites it);
// dst [ncols, nrows] of dst_type (f32, or f16 rounded to nearest even as ggml's
// GGML_FP32_TO_FP16), contiguous.
// f16: ncols must be even and dst must start on a 4-byte boundary (two halves are written as one
// 32-bit word, so neighbouring invocations never race on a word).
// A row index outside [0, nrows) writes nothing (ggml asserts; device data cannot be checked when
// recording). Variants "set_rows_{f32,f16}".
// Errors: invalid_argument for shapes/slices that do not fit; unsupported for another dst_type.
// Records only.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status set_rows(CommandRecorder& rec, const BufferSlice& src, int64_t ncols, int64_t m,
                const BufferSlice& rows, DType dst_type, const BufferSlice& dst, int64_t nrows);

}  // namespace tandem::gpu::ops
