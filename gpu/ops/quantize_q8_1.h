// quantize_q8_1: f32 activations -> the q8_1 blocks the integer-dot mat-vecs read
// (shaders/common/q8_1.glsl: per 32 values f32 d, f32 s = d * sum(q), int8 q[32]; 40 bytes).
// d = fp16(amax / 127) and q = roundf(x * 127 / amax), ggml's quantize_row_q8_0_ref: the
// quants equal what the CPU's q4_0 / q8_0 kernels make of the same activations (cpu/quants.cpp).
// Shapes (ggml ne order): x [ncols, nrows] f32, contiguous; dst [ncols / 32, nrows] blocks.
// ncols must be a multiple of 32. mul_mat_vec / mul_mat_vec_id run this themselves unless told
// the blocks are ready (MulMatVecOptions::q8_1_ready): quantize once, then every mat-vec that
// reads the same activations shares the blocks. Variant "quantize_q8_1" (no device feature).
// Errors: invalid_argument for shapes or slices that do not fit. Records only.
#pragma once

#include <cstdint>

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

inline constexpr uint64_t k_q8_1_block_bytes = 40;

// Bytes the q8_1 blocks of `nrows` rows of `ncols` activations take (0 for a bad shape).
uint64_t q8_1_bytes(int64_t ncols, int64_t nrows);

Status quantize_q8_1(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows,
                     const BufferSlice& dst);

}  // namespace tandem::gpu::ops
