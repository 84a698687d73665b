// mul_mat_vec_t_id: the ReLU-sparse expert down projection over PowerInfer's transposed
// ffn_down_exps (spec §3.4, ModelShape::down_layout == transposed). For each slot s:
//   dst[s][i] = sum_j h[s][j] * W[ids[s]][j][i],  rows j with h[s][j] == 0 are skipped.
// Shapes (ggml ne order): weights [nout = n_embd, nin = n_ff_exp, n_expert] of `wtype` (f32,
// f16, q8_0, q4_0), contiguous; h [nin, n_slots] f32 (the ReGLU output per slot); ids
// [n_slots] i32; dst [nout, n_slots] f32. nout must be a multiple of the block size.
// An id outside [0, n_expert) makes that slot's row NaN. Records only.
#pragma once

#include "core/dtype.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status mul_mat_vec_t_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t nout, int64_t nin,
                        int64_t n_expert, const BufferSlice& ids, int64_t n_slots, const BufferSlice& h,
                        const BufferSlice& dst);

}  // namespace tandem::gpu::ops
