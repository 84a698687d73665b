// The model maker (`tandem make-model`): writes SmallThinker-architecture GGUF files with
// exactly llama.cpp's keys, key types and tensor names/shapes (spec §3.2-3.3), weights
// deterministic from a seed, streamed to disk one tensor (or expert) at a time.
//
// Presets (spec §1.1 for 4b/21b; every field below can override them):
//   tiny    : < 1 MB, for tests (n_layer 4, n_embd 64, n_head 4, n_head_kv 2, head_dim 16,
//             n_expert 8, n_expert_used 2, n_ff_exp 128, builtin vocab of 512, n_ctx_train 8192
//             so sliding-window tests fit, rope base 1e4, tied, no swa)
//   default : the built-in default model of the README's command 1 (n_layer 8, n_embd 512,
//             n_head 8, n_head_kv 2, head_dim 64, n_expert 16, n_expert_used 4, n_ff_exp 256,
//             vocab 2048, ctx 4096, rope base 1e4, tied; 32 MB in q4_0)
//   4b      : SmallThinker-4B-A0.6B shapes, vocab 151936, tied, no swa (2.28 GB in q4_0)
//   21b     : SmallThinker-21B-A3B shapes (swa on, untied), vocab 151936 (12.1 GB in q4_0)
// Row lengths of 2-D weights (n_embd, n_ff_exp, n_head*head_dim, n_head_kv*head_dim) must be
// multiples of 32, and --transpose-down needs n_ff_exp != n_embd (else the transposed
// ffn_down_exps has the standard shape and loaders read it as standard).
//
// Construction (documented in --help and the README): see model_maker.cpp's header comment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "core/model_shape.h"
#include "core/status.h"

namespace tandem {

struct MakeModelOptions {
  std::string preset = "tiny";
  // Shape overrides (unset = the preset's value).
  std::optional<uint32_t> n_layer, n_embd, n_head, n_head_kv, head_dim, n_expert, n_expert_used,
      n_ff_exp, n_vocab, n_ctx_train;
  std::optional<float> rope_freq_base;
  DType dtype = DType::q4_0;                  // 2-D weights; norms and router stay f32
  uint64_t seed = 42;
  ExpertGating gating = ExpertGating::sigmoid;  // none = omit the key (PowerInfer-style file)
  std::optional<bool> swa;                    // default: the preset's (on for 21b)
  bool transpose_down = false;                // PowerInfer layout of ffn_down_exps
  std::optional<bool> tied;                   // default: the preset's
  float skew = 1.0f;                          // Zipf exponent of expert popularity (0 = flat)
  float relu_sparsity = 0.6f;                 // fraction of expert gate pre-activations <= 0
  std::optional<std::filesystem::path> vocab; // tiktoken ranks file -> real Qwen2 vocabulary
  std::string name;                           // general.name (default: "tandem-<preset>")
};

// Resolves the preset and overrides into the shape that will be written (validated: clear
// invalid_argument errors for impossible shapes, e.g. n_expert_used > n_expert).
Result<ModelShape> resolve_model_shape(const MakeModelOptions& opts);

// Progress: bytes written so far and total bytes of the file.
using MakeModelProgress = std::function<void(uint64_t done, uint64_t total)>;

Status make_model(const MakeModelOptions& opts, const std::filesystem::path& out,
                  const MakeModelProgress& progress = {});

}  // namespace tandem
