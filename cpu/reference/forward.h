// The plain reference forward pass of SmallThinker (spec /work/shared/spec/smallthinker.md
// §2.1-2.6): the spec in code, built from the ops in cpu/reference/ops.h. f32 activations,
// f64 accumulation, weights dequantized row by row. Slow by design: it is what every fast
// path is compared against, on tiny models and short prompts.
//
// Per layer il, for each token t (positions 0..T-1 from an empty context):
//   r      = x                                    router input: the RAW layer input
//   route  = route(gating, ffn_gate_inp r, n_expert_used)   (ops.h: top-k of probabilities)
//   h      = rms_norm(x, attn_norm)
//   q,k,v  = attn_q h, attn_k h, attn_v h; self_attention (rope where use_rope(il), causal,
//            SWA window where is_swa(il), GQA) ; x += attn_output o
//   f      = rms_norm(x, ffn_norm)
//   x     += sum over slots s in slot order of weights[s] * expert_reglu(experts[s], f)
// then logits = output rms_norm(x, output_norm). Weights are taken as given: `output` is
// token_embd when the model is tied (the loader points it there).
// Single-threaded and pure: safe to call concurrently on shared weights.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/model_shape.h"
#include "core/model_weights.h"
#include "core/status.h"
#include "cpu/reference/ops.h"  // TokenRouting

namespace tandem::cpu::reference {

// Optional outputs for tests and profiling.
struct ForwardTrace {
  // routing[il][t]: the experts (descending probability) and renormalised weights.
  std::vector<std::vector<TokenRouting>> routing;
  // gate_active_fraction[il][t]: fraction of the n_expert_used * n_ff_exp (slot, neuron) gate
  // values that are > 0, i.e. the ReLU-active share the sparse kernels exploit (spec §5.1).
  std::vector<std::vector<float>> gate_active_fraction;
};

// Checks that `w` matches `shape` before any forward pass: every tensor present, ne exactly
// as spec §3.3 (ffn_down_exps per shape.down_layout), ne[0] a multiple of the dtype's block
// size, rows laid out without overlap (nb[1] >= row size, nb[2] >= ne[1] * nb[1]), and the
// hyperparameters consistent (n_head % n_head_kv == 0, n_rot even and <= head_dim,
// 1 <= n_expert_used <= n_expert, gating sigmoid or softmax, n_swa > 0 when swa, ...).
// Errors: invalid_argument naming the hyperparameter or tensor (and its ne) that is wrong.
Status check_model(const ModelShape& shape, const ModelWeights& w);

// Logits for every position of `tokens` (positions 0..T-1, processed from an empty context),
// row-major (T, n_vocab). When `trace` is given it is overwritten with per-layer routing.
// Errors: invalid_argument for token ids out of range or T == 0, and check_model's errors.
Status forward(const ModelShape& shape, const ModelWeights& w, std::span<const int32_t> tokens,
               std::vector<float>& logits, ForwardTrace* trace = nullptr);

}  // namespace tandem::cpu::reference
