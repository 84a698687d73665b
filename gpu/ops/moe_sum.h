// moe_sum: the weighted sum of the experts' outputs of each token, summed in slot order (as
// llama.cpp build_moe_ffn: ggml_mul by the weights, then ggml_add over the n_expert_used views):
//   dst[r][c] = sum_{s < k} weights[r][s] * expert_out[r][s][c]
// Shapes (ggml ne order): expert_out [n_embd, k, m] f32 (slot s of token r = row r*k + s, the
// dst of mul_mat_vec_id / mul_mat_vec_t_id / mul_mat_id with ids [k, m]); weights [k, m] f32 (the
// top_k weights); dst [n_embd, m] f32 (must not overlap expert_out). Add the residual with add().
// Variant "moe_sum_f32". Errors: invalid_argument for shapes/slices that do not fit. Records only.
//
// The expert FFN for m tokens (prompt) on the GPU, with ids [k, m] from top_k:
//   gate, up: mul_mat_id (mul_mat_id.h; x [n_embd, m], one row per token, broadcast over its k
//             slots) -> [n_ff_exp, k, m]
//   reglu over k*m*n_ff_exp elements
//   down:     mul_mat_vec_id with n_slots = k*m, broadcast_x = false (ids [k, m] read flat), or
//             mul_mat_vec_t_id with n_slots = k*m for the transposed layout
//   moe_sum -> [n_embd, m]
// For m = 1 the same chain works with mul_mat_vec_id (broadcast_x = true) for gate/up.
#pragma once

#include <cstdint>

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status moe_sum(CommandRecorder& rec, const BufferSlice& expert_out, const BufferSlice& weights,
               int64_t n_embd, int64_t k, int64_t m, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
