// top_k: the SmallThinker router after its logits (spec §1.3, §2.1; CPU reference:
// cpu/reference/ops.h route(), llama.cpp build_moe_ffn). Per row r of logits:
//   probs = gating(logits[r])   ExpertGating::softmax over all n_expert, or sigmoid element-wise
//   ids[r] = the k largest probs, best first, ties to the lower index (NaN ranks lowest)
//   weights[r][s] = probs[ids[r][s]] / max(sum_s probs[ids[r][s]], 6.103515625e-5)
// all in f32 (the sum in slot order).
// Shapes (ggml ne order): logits [n_expert, m] f32; ids [k, m] i32; weights [k, m] f32 — the
// layout mul_mat_vec_id / mul_mat_id / moe_sum take (ids of token r at [r*k, r*k + k)).
// Limits: 1 <= n_expert <= k_top_k_max_expert (1024, one workgroup per row holding the row in
// shared memory), 1 <= k <= n_expert, m <= 65535 * 65535. Variants "top_k_f32" and
// "top_k_f32_subgroup" (subgroup arg-max; same result), chosen as gpu/ops/shader_variant.h says.
// Errors: invalid_argument for shapes, slices or gating none. Records only.
#pragma once

#include <cstdint>

#include "core/model_shape.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::ops {

inline constexpr int64_t k_top_k_max_expert = 1024;

Status top_k(CommandRecorder& rec, ExpertGating gating, const BufferSlice& logits, int64_t n_expert,
             int64_t m, int64_t k, const BufferSlice& ids, const BufferSlice& weights,
             ShaderVariant variant = ShaderVariant::automatic);

// The variants this device can run (portable first).
std::vector<ShaderVariant> top_k_variants(const Device& device);

}  // namespace tandem::gpu::ops
