// Presets of `tandem make-model` and their validation. The 4b and 21b values are spec §1.1
// (SmallThinker-4B-A0.6B and -21B-A3B); tiny and default are Tandem's own small models.
#include <array>
#include <cmath>
#include <string_view>

#include "runtime/model_maker.h"

namespace tandem {
namespace {

struct Preset {
  std::string_view name;
  ModelShape shape;
};

ModelShape make_preset(uint32_t n_layer, uint32_t n_embd, uint32_t n_head, uint32_t n_head_kv,
                       uint32_t head_dim, uint32_t n_expert, uint32_t n_expert_used, uint32_t n_ff_exp,
                       uint32_t n_vocab, uint32_t n_ctx_train, float rope_base, bool swa, bool tied) {
  ModelShape s;
  s.n_layer = n_layer;
  s.n_embd = n_embd;
  s.n_head = n_head;
  s.n_head_kv = n_head_kv;
  s.n_embd_head_k = head_dim;
  s.n_embd_head_v = head_dim;
  s.n_rot = head_dim;
  s.n_expert = n_expert;
  s.n_expert_used = n_expert_used;
  s.n_ff_exp = n_ff_exp;
  s.n_vocab = n_vocab;
  s.n_ctx_train = n_ctx_train;
  s.rms_norm_eps = 1e-6f;
  s.rope_freq_base = rope_base;
  s.rope_freq_base_swa = rope_base;
  s.swa = swa;
  s.tied_output = tied;
  return s;
}

const std::array<Preset, 4>& presets() {
  // tiny runs past 4096 positions (n_ctx_train 8192) so a sliding-window test fits in it;
  // its n_ff_exp (128) differs from n_embd (64) so both ffn_down_exps layouts are distinguishable.
  static const std::array<Preset, 4> k = {{
      {"tiny", make_preset(4, 64, 4, 2, 16, 8, 2, 128, 512, 8192, 10000.0f, false, true)},
      {"default", make_preset(8, 512, 8, 2, 64, 16, 4, 256, 2048, 4096, 10000.0f, false, true)},
      {"4b", make_preset(32, 1536, 12, 2, 128, 32, 4, 768, 151936, 32768, 1.5e6f, false, true)},
      {"21b", make_preset(52, 2560, 28, 4, 128, 64, 6, 768, 151936, 16384, 1.5e6f, true, false)},
  }};
  return k;
}

// Bounds that keep every product (elements per tensor, bytes per file) far from overflow and
// every count representable where llama.cpp stores it (i32 token ids, u32 keys).
constexpr uint32_t k_max_dim = 1u << 16;
constexpr uint32_t k_max_vocab = 1u << 22;
constexpr uint32_t k_max_layer = 1024;
constexpr uint32_t k_max_expert = 1024;

Status check_range(const char* what, uint32_t v, uint32_t lo, uint32_t hi) {
  if (v < lo || v > hi) {
    return make_error(ErrorCode::invalid_argument, "make-model: {} = {} is out of range [{}, {}]", what, v, lo, hi);
  }
  return {};
}

Status check_row_multiple(const char* what, uint64_t v) {
  if (v % 32 != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "make-model: {} = {} is not a multiple of 32 (the q4_0/q8_0 block size; every row "
                      "length of a 2-D weight must be one)",
                      what, v);
  }
  return {};
}

}  // namespace

Result<ModelShape> resolve_model_shape(const MakeModelOptions& opts) {
  const Preset* preset = nullptr;
  for (const auto& p : presets()) {
    if (p.name == opts.preset) preset = &p;
  }
  if (preset == nullptr) {
    return make_error(ErrorCode::invalid_argument, "make-model: unknown preset '{}' (tiny, default, 4b, 21b)",
                      opts.preset);
  }
  ModelShape s = preset->shape;
  if (opts.n_layer) s.n_layer = *opts.n_layer;
  if (opts.n_embd) s.n_embd = *opts.n_embd;
  if (opts.n_head) s.n_head = *opts.n_head;
  if (opts.n_head_kv) s.n_head_kv = *opts.n_head_kv;
  if (opts.head_dim) s.n_embd_head_k = s.n_embd_head_v = s.n_rot = *opts.head_dim;
  if (opts.n_expert) s.n_expert = *opts.n_expert;
  if (opts.n_expert_used) s.n_expert_used = *opts.n_expert_used;
  if (opts.n_ff_exp) s.n_ff_exp = *opts.n_ff_exp;
  if (opts.n_vocab) s.n_vocab = *opts.n_vocab;
  if (opts.n_ctx_train) s.n_ctx_train = *opts.n_ctx_train;
  if (opts.rope_freq_base) s.rope_freq_base = s.rope_freq_base_swa = *opts.rope_freq_base;
  if (opts.swa) s.swa = *opts.swa;
  if (opts.tied) s.tied_output = *opts.tied;
  s.gating = opts.gating;
  s.gating_from_file = opts.gating != ExpertGating::none;
  s.n_swa = s.swa ? 4096u : 0u;  // llama.cpp forces 4096 whatever the file says (spec §2.4)
  s.swa_pattern = 4;
  s.down_layout = opts.transpose_down ? DownLayout::transposed : DownLayout::standard;

  TANDEM_RETURN_IF_ERROR(check_range("n_layer", s.n_layer, 1, k_max_layer));
  TANDEM_RETURN_IF_ERROR(check_range("n_embd", s.n_embd, 32, k_max_dim));
  TANDEM_RETURN_IF_ERROR(check_range("n_head", s.n_head, 1, 1024));
  TANDEM_RETURN_IF_ERROR(check_range("n_head_kv", s.n_head_kv, 1, 1024));
  TANDEM_RETURN_IF_ERROR(check_range("head_dim", s.n_embd_head_k, 2, 1024));
  TANDEM_RETURN_IF_ERROR(check_range("n_expert", s.n_expert, 1, k_max_expert));
  TANDEM_RETURN_IF_ERROR(check_range("n_expert_used", s.n_expert_used, 1, k_max_expert));
  TANDEM_RETURN_IF_ERROR(check_range("n_ff_exp", s.n_ff_exp, 32, k_max_dim));
  TANDEM_RETURN_IF_ERROR(check_range("n_vocab", s.n_vocab, 259, k_max_vocab));
  TANDEM_RETURN_IF_ERROR(check_range("n_ctx_train", s.n_ctx_train, 1, 1u << 24));
  if (s.n_expert_used > s.n_expert) {
    return make_error(ErrorCode::invalid_argument, "make-model: n_expert_used = {} is larger than n_expert = {}",
                      s.n_expert_used, s.n_expert);
  }
  if (s.n_head % s.n_head_kv != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "make-model: n_head = {} is not a multiple of n_head_kv = {} (grouped-query attention)",
                      s.n_head, s.n_head_kv);
  }
  if (s.n_embd_head_k % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "make-model: head_dim = {} must be even (NEOX rope pairs)",
                      s.n_embd_head_k);
  }
  TANDEM_RETURN_IF_ERROR(check_row_multiple("n_embd", s.n_embd));
  TANDEM_RETURN_IF_ERROR(check_row_multiple("n_ff_exp", s.n_ff_exp));
  TANDEM_RETURN_IF_ERROR(check_row_multiple("n_head*head_dim", uint64_t{s.n_head} * s.n_embd_head_k));
  TANDEM_RETURN_IF_ERROR(check_row_multiple("n_head_kv*head_dim", uint64_t{s.n_head_kv} * s.n_embd_head_k));
  if (uint64_t{s.n_head} * s.n_embd_head_k > k_max_dim) {
    return make_error(ErrorCode::invalid_argument, "make-model: n_head*head_dim = {} is larger than {}",
                      uint64_t{s.n_head} * s.n_embd_head_k, k_max_dim);
  }
  if (s.down_layout == DownLayout::transposed && s.n_ff_exp == s.n_embd) {
    return make_error(ErrorCode::invalid_argument,
                      "make-model: --transpose-down needs n_ff_exp != n_embd (both are {}): the transposed "
                      "ffn_down_exps would have the standard shape and loaders would read it as standard",
                      s.n_embd);
  }
  if (!(s.rope_freq_base > 0.0f) || !std::isfinite(s.rope_freq_base)) {
    return make_error(ErrorCode::invalid_argument, "make-model: rope_freq_base = {} must be positive and finite",
                      s.rope_freq_base);
  }
  if (!(opts.skew >= 0.0f && opts.skew <= 10.0f)) {
    return make_error(ErrorCode::invalid_argument, "make-model: skew = {} is out of range [0, 10]", opts.skew);
  }
  if (!(opts.relu_sparsity >= 0.01f && opts.relu_sparsity <= 0.99f)) {
    return make_error(ErrorCode::invalid_argument, "make-model: relu_sparsity = {} is out of range [0.01, 0.99]",
                      opts.relu_sparsity);
  }
  if (opts.dtype != DType::f32 && opts.dtype != DType::f16 && opts.dtype != DType::q8_0 &&
      opts.dtype != DType::q4_0) {
    return make_error(ErrorCode::unsupported, "make-model: dtype {} is not one the maker writes (f32, f16, q8_0, q4_0)",
                      dtype_name(opts.dtype));
  }
  if (opts.vocab && s.n_vocab < 151646) {
    return make_error(ErrorCode::invalid_argument,
                      "make-model: n_vocab = {} cannot hold the Qwen2 vocabulary of --vocab (needs >= 151646)",
                      s.n_vocab);
  }
  return s;
}

}  // namespace tandem
