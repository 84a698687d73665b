// Plain reference ops of the SmallThinker forward pass (spec /work/shared/spec/smallthinker.md
// §2). Simple loops over f32 data with f64 accumulation; weights are dequantized row by row
// with cpu/quants.h as they are used. Every fast path (SIMD, Vulkan, the runtime's forward)
// is checked against these, so they favour obviousness over speed.
//
// Conventions: weight matrices are TensorViews in ggml ne order (ne[0] = contiguous, a matrix
// with ne = [in, out] holds `out` rows of `in` elements; y[o] = dot(row o, x)). Activations
// are row-major f32 spans. Sizes are preconditions checked with assert: callers that take
// untrusted input (forward()) validate shapes first and return a Status. All functions are
// pure and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "core/tensor_view.h"

namespace tandem::cpu::reference {

// ---- norms, softmax -------------------------------------------------------------------------

// RMSNorm (spec §2.1, ggml_rms_norm followed by ggml_mul with the weight):
//   y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]
// x, w, y: n floats (y may alias x). mean(x^2) is accumulated in f64.
void rms_norm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> y);

// Softmax over a row: y[i] = exp(x[i] - max) / sum_j exp(x[j] - max), in f64.
// Entries equal to -inf get exactly 0 (used for masking). If every entry is -inf the row has
// no mass; y is all zeros then (ggml would produce NaN; a causal row always sees itself).
// y may alias x.
void soft_max(std::span<const float> x, std::span<float> y);

// ---- rope -----------------------------------------------------------------------------------

// NEOX RoPE in place on one head vector (spec §2.3, ggml rope mode NEOX == HF rotate_half):
// for i in [0, n_rot/2): theta_i = pos * base^(-2i/n_rot), and the pair
// (x[i], x[i + n_rot/2]) becomes (x_i cos - x_{i+n/2} sin, x_i sin + x_{i+n/2} cos).
// Elements at index >= n_rot are left untouched. freq_scale = 1, no YaRN (SmallThinker has
// none). Angles and products are computed in f64.
// Preconditions: n_rot even, 0 < n_rot <= head.size().
void rope_neox(std::span<float> head, int64_t pos, int n_rot, float base);

// ---- matrix-vector --------------------------------------------------------------------------

// Dequantizes row i1 of matrix i2 of `w` (any dtype cpu/quants.h reads) into y (w.ne[0] floats).
void get_row(const TensorView& w, int64_t i1, int64_t i2, std::span<float> y);

// dot(row i1 of matrix i2 of w, x), the row dequantized to f32 and the sum taken in f64.
// x: w.ne[0] floats.
float mul_mat_row(const TensorView& w, int64_t i1, int64_t i2, std::span<const float> x);

// y = W x for matrix i2 of w: y[o] = dot(row o, x) for o in [0, w.ne[1]).
// x: w.ne[0] floats; y: w.ne[1] floats (must not alias x).
void mul_mat_vec(const TensorView& w, int64_t i2, std::span<const float> x, std::span<float> y);

// ---- router (spec §1.3, §2.1) ---------------------------------------------------------------

// Per-token routing of one layer: expert ids in descending probability and their weights,
// renormalised to sum to 1 (unless the clamp below applies).
struct TokenRouting {
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

// The lower bound llama.cpp puts on the sum of the selected probabilities before dividing
// (UP src/llama-graph.cpp build_moe_ffn: ggml_clamp(weights_sum, 6.103515625e-5, INFINITY)).
// PowerInfer does not clamp; the two agree whenever the sum is >= this (always, in practice).
inline constexpr float k_router_weight_sum_min = 6.103515625e-5f;

// Gating function over ALL n_expert router logits: sigmoid(l) element-wise, or softmax(l)
// over the row. Computed in f64 and rounded to f32, as llama.cpp holds probabilities in f32.
// Errors: invalid_argument for ExpertGating::none (upstream aborts there; the loader resolves
// a missing key to an explicit choice before any forward pass).
Status router_probs(ExpertGating gating, std::span<const float> logits, std::span<float> probs);

// Indices of the k largest values of x in descending order. Ties: the lower index first
// (stable). NaN ranks below every number. k is clamped to [0, x.size()].
// Note: ranking the f32 probabilities (as llama.cpp does) can tie where the logits do not
// (sigmoid saturates to 1.0f above ~17); HF ranks the logits and may then pick another expert.
std::vector<int32_t> top_k(std::span<const float> x, int64_t k);

// Router of one token: probs = router_probs(gating, logits); experts = top_k(probs, k);
// weights[s] = probs[experts[s]] / max(sum_s probs[experts[s]], k_router_weight_sum_min),
// the sum in f64. Errors: invalid_argument for gating none, or k outside [1, logits.size()].
Result<TokenRouting> route(ExpertGating gating, std::span<const float> logits, int64_t k);

// ---- attention (spec §2.3, §2.4) ------------------------------------------------------------

// Read-only row-major f32 matrix: `rows` rows of `cols` floats, `stride` floats apart.
struct RowsF32 {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  const float* row(int64_t r) const { return data + r * stride; }
};

// True when a query at position pos_q must not see a key at pos_k on layer il:
// causal (pos_k > pos_q), or on shape.is_swa(il) layers pos_q - pos_k >= shape.n_swa
// (a query sees the n_swa most recent positions including its own).
bool kq_masked(const ModelShape& shape, uint32_t il, int64_t pos_q, int64_t pos_k);

// One query head at position pos_q attending over the keys/values of one kv head stored for
// positions 0..k.rows-1 (row j = position j):
//   s_j = dot(q, k_j) / sqrt(shape.n_embd_head_k)   (-inf where kq_masked)
//   out = sum_j softmax(s)_j v_j                      (f64 sums)
// q: n_embd_head_k floats, already rotated if the layer uses rope. k: cols = n_embd_head_k;
// v: rows = k.rows, cols = n_embd_head_v; out: n_embd_head_v floats.
void attention_head(const ModelShape& shape, uint32_t il, int64_t pos_q, std::span<const float> q,
                    const RowsF32& k, const RowsF32& v, std::span<float> out);

// Self-attention of n_tokens tokens at positions 0..n_tokens-1 (an empty context) on layer il,
// after the q/k/v projections and before attn_output:
//   q: (n_tokens, n_head * n_embd_head_k)   row-major, head h at columns [h*hd, (h+1)*hd)
//   k: (n_tokens, n_head_kv * n_embd_head_k)
//   v: (n_tokens, n_head_kv * n_embd_head_v)
//   out: (n_tokens, n_head * n_embd_head_v)
// Copies of q and k are rotated with rope_neox(pos, n_rot, shape.rope_base(il)) only where
// shape.use_rope(il) (NoPE layers rotate neither). GQA: q head h reads kv head
// h / (n_head / n_head_kv) (ggml broadcast == HF repeat_kv). Inputs are not modified.
void self_attention(const ModelShape& shape, uint32_t il, int64_t n_tokens,
                    std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<float> out);

// ---- experts (spec §2.5, §3.4) --------------------------------------------------------------

// One ReGLU expert e: g = gate_e x, u = up_e x, a = max(g, 0) * u (relu on the gate only;
// negative up values survive), y = down_e a.
//   gate_exps, up_exps: ne = [n_embd, n_ff, n_expert]
//   down_exps: DownLayout::standard   ne = [n_ff, n_embd, n_expert]: y[o] = dot(row o, a)
//              DownLayout::transposed ne = [n_embd, n_ff, n_expert]: y = sum_j a[j] * row j
//   x: n_embd floats; y: n_embd floats (must not alias x).
// Returns the number of neurons j with g[j] > 0 (the ReLU-active ones, spec §5.1).
int64_t expert_reglu(const TensorView& gate_exps, const TensorView& up_exps,
                     const TensorView& down_exps, DownLayout layout, int32_t expert,
                     std::span<const float> x, std::span<float> y);

}  // namespace tandem::cpu::reference
