// Session: one model opened for text generation — owns the Model (mapping), Tokenizer,
// Executor (the KV cache and forward pass, wherever they run: executor.h) and Sampler, and keeps the tokens the cache holds so that a later prompt
// that starts with them (the next turn of a chat) only evaluates what is new.
//
// generate(prompt): `prompt` is the WHOLE sequence the model should have seen (for a chat,
// the full rendered conversation). The cache is truncated to the longest common prefix of
// prompt and cached_tokens() (at least one prompt token is always evaluated, for logits), the
// rest is evaluated in ubatches, then up to n_predict tokens are sampled one at a time and
// streamed to `on_token`. Generation stops at an end-of-generation token (Tokenizer::is_eog;
// the EOG token is reported but not evaluated), after n_predict tokens, when the callback
// returns false, or (n_predict < 0) when the context is full.
//
// Errors (nothing is evaluated): empty prompt; "prompt has X tokens but the context is N (-c)";
// n_predict > 0 with prompt + n_predict > n_ctx (naming -n). Not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "runtime/executor.h"
#include "runtime/executor_factory.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

namespace tandem {

struct SessionOptions {
  std::filesystem::path model_path;
  uint32_t n_ctx = 4096;          // -c; 0 = the model's training context
  uint32_t n_ubatch = 512;        // -ub
  int n_threads = 0;              // -t; 0 = all hardware threads
  DType cache_type = DType::f16;  // --cache-type-k (K and V)
  bool use_mmap = true;           // false: --no-mmap (Model::load with FileLoad::read)
  SamplerParams sampling;
  // Where the work runs (executor_factory.h): placement, device, cpu_ops, plan, mem_limit,
  // trace. Its n_ctx/n_ubatch/n_threads/cache_type are taken from the fields above.
  ExecutorOptions executor;
};

struct GenerateStats {
  uint32_t n_prompt_eval = 0;   // prompt tokens evaluated (after the reused prefix)
  uint32_t n_prompt_reused = 0; // prompt tokens already in the cache
  uint32_t n_generated = 0;     // tokens sampled (the EOG one included)
  uint32_t n_decode = 0;        // single-token evaluations after the prompt
  double prompt_seconds = 0.0;  // prompt evaluation
  double decode_seconds = 0.0;  // single-token evaluations
  double ttft_seconds = 0.0;    // start of generate() to the first sampled token
  bool stopped_at_eog = false;

  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? n_prompt_eval / prompt_seconds : 0.0; }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? n_decode / decode_seconds : 0.0; }
};

// Receives each sampled token and its text (complete UTF-8 only; control tokens give "").
// Return false to stop generating. A last call with token -1 carries text the detokenizer
// still held (an incomplete UTF-8 sequence, as U+FFFD) when generation ended without EOG.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

class Session {
 public:
  static Result<std::unique_ptr<Session>> open(const SessionOptions& options);

  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  Executor& executor() { return *executor_; }
  Sampler& sampler() { return sampler_; }
  const SessionOptions& options() const { return options_; }
  const std::vector<int32_t>& cached_tokens() const { return cached_; }

  // BOS first when the vocabulary adds one (add_special); control tokens parsed when asked.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const {
    return tokenizer_.encode(text, add_special, parse_special);
  }

  Result<GenerateStats> generate(std::span<const int32_t> prompt, int32_t n_predict, const TokenCallback& on_token);
  void reset();  // empties the cache and the sampler's history

 private:
  Session(Model model, Tokenizer tokenizer, SessionOptions options);
  Model model_;
  Tokenizer tokenizer_;
  SessionOptions options_;
  std::unique_ptr<Executor> executor_;
  Sampler sampler_;
  std::vector<int32_t> cached_;
  std::vector<float> logits_;
  std::vector<int32_t> unused_ids_;  // token_type UNUSED (padding): masked before sampling
};

// Peak resident set size of this process in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();

// When `path` does not exist, writes the built-in default model there (make_model preset
// "default"), saying so on stderr. Errors: the maker's.
Status ensure_default_model(const std::filesystem::path& path);

}  // namespace tandem
