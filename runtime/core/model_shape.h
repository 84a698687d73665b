// ModelShape: the SmallThinker hyperparameters as the runtime understands them, plus the
// per-layer attention layout derived from them exactly as llama.cpp does (spec §1, §2.4).
// Plain data, shared by cpu/, gpu/, planner/ and runtime/ (the planner needs shapes only).
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

// llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE values, as stored in `A.expert_gating_func`.
enum class ExpertGating : uint32_t { none = 0, softmax = 1, sigmoid = 2 };

// Layout of `ffn_down_exps` (spec §3.4): standard ne=[n_ff_exp, n_embd, n_expert] (n_embd rows
// of n_ff_exp), or PowerInfer's transposed ne=[n_embd, n_ff_exp, n_expert] (row j = the
// n_embd-vector neuron j adds to the output).
enum class DownLayout : uint32_t { standard = 0, transposed = 1 };

struct ModelShape {
  uint32_t n_vocab = 0;
  uint32_t n_ctx_train = 0;     // A.context_length
  uint32_t n_embd = 0;          // A.embedding_length
  uint32_t n_layer = 0;         // A.block_count
  uint32_t n_head = 0;          // A.attention.head_count
  uint32_t n_head_kv = 0;       // A.attention.head_count_kv
  uint32_t n_embd_head_k = 0;   // A.attention.key_length (head_dim)
  uint32_t n_embd_head_v = 0;   // A.attention.value_length
  uint32_t n_rot = 0;           // A.rope.dimension_count (default key_length)
  uint32_t n_expert = 0;        // A.expert_count
  uint32_t n_expert_used = 0;   // A.expert_used_count
  uint32_t n_ff_exp = 0;        // A.expert_feed_forward_length
  float rms_norm_eps = 1e-6f;   // A.attention.layer_norm_rms_epsilon
  float rope_freq_base = 10000.0f;      // A.rope.freq_base
  float rope_freq_base_swa = 10000.0f;  // A.rope.freq_base_swa (default: rope_freq_base)
  ExpertGating gating = ExpertGating::sigmoid;
  bool gating_from_file = true;  // false when the key was missing and sigmoid was assumed
  // Sliding window: on when A.attention.sliding_window is present and > 0. llama.cpp then
  // forces n_swa = 4096 and swa_pattern = 4 ("dense first": il % 4 == 0 is full + NoPE).
  bool swa = false;
  uint32_t n_swa = 0;           // 4096 when swa
  uint32_t swa_pattern = 4;     // A.attention.sliding_window_pattern (UP) or 4
  DownLayout down_layout = DownLayout::standard;
  bool tied_output = true;      // no output.weight: logits use token_embd.weight

  uint32_t n_embd_q() const { return n_head * n_embd_head_k; }     // attn_q rows
  uint32_t n_embd_k_gqa() const { return n_head_kv * n_embd_head_k; }
  uint32_t n_embd_v_gqa() const { return n_head_kv * n_embd_head_v; }
  uint32_t n_gqa() const { return n_head_kv ? n_head / n_head_kv : 0; }

  // Spec §2.4: is_swa(il) = swa && il % P != 0.
  bool is_swa(uint32_t il) const { return swa && swa_pattern > 0 && (il % swa_pattern) != 0; }
  // Spec §2.4: n_no_rope_layer_step = 4 when swa, else n_layer;
  // use_rope(il) = step == n_layer || il % step != 0.
  bool use_rope(uint32_t il) const {
    const uint32_t step = swa ? 4u : n_layer;
    return step == n_layer || (il % step) != 0;
  }
  float rope_base(uint32_t il) const { return is_swa(il) ? rope_freq_base_swa : rope_freq_base; }
};

// One expert of one layer. Ordered by (layer, expert).
struct ExpertId {
  int32_t layer = 0;
  int32_t expert = 0;
  friend bool operator==(const ExpertId&, const ExpertId&) = default;
  friend auto operator<=>(const ExpertId&, const ExpertId&) = default;
};

}  // namespace tandem
