// Sampler: picks the next token from a row of logits, as llama.cpp's default chain does
// (common/sampling.cpp; src/llama-sampling.cpp), in this order:
//   penalties -> top_k -> top_p -> min_p -> temperature -> dist
// Greedy (argmax after penalties; lowest id on ties) when temp <= 0.
//
//   penalties: over the last repeat_last_n accepted tokens (0 = off, -1 = all of them), a
//     token seen c > 0 times gets  logit = logit > 0 ? logit / repeat_penalty
//     : logit * repeat_penalty,  then  logit -= c * frequency_penalty + presence_penalty
//     (llama_sampler_penalties_apply).
//   top_k: keep the k largest logits (k <= 0: keep all).
//   top_p: softmax over what is left, sorted; keep the smallest prefix whose probability sum
//     reaches p (the token that crosses p is kept); p >= 1: keep all.
//   min_p: keep tokens with logit >= max_logit + ln(min_p), i.e. p_i >= min_p * p_max
//     (min_p <= 0: keep all).
//   temperature: logit /= temp.
//   dist: softmax; draw u in [0, 1) as rng() / 2^32 from std::mt19937(seed) and take the
//     first token whose cumulative probability exceeds u (portable: no std:: distribution).
// Every filter keeps at least one token. NaN logits count as -inf.
//
// sample() does not remember its choice: call accept(token) for every token that enters the
// context (prompt tokens too, if penalties should see them), as llama.cpp's
// common_sampler_accept. Not thread-safe; one Sampler per sequence.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace tandem {

struct SamplerParams {
  float temp = 0.8f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;     // llama.cpp --repeat-penalty (1 = off)
  int32_t repeat_last_n = 64;      // llama.cpp --repeat-last-n
  float frequency_penalty = 0.0f;  // llama.cpp --frequency-penalty
  float presence_penalty = 0.0f;   // llama.cpp --presence-penalty
  uint32_t seed = 0xFFFFFFFFu;     // llama.cpp LLAMA_DEFAULT_SEED: a random seed is drawn
};

struct TokenCandidate {
  int32_t id;
  float logit;
  float p;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);

  // Returns the chosen id in [0, logits.size()), or -1 when logits is empty.
  int32_t sample(std::span<const float> logits);
  void accept(int32_t token);
  void reset();  // forgets accepted tokens; the random stream continues

  const SamplerParams& params() const { return params_; }
  uint32_t seed() const { return seed_; }  // the seed in use (drawn when params.seed was the default)
  // The candidates left after the last sample()'s filters (sorted by logit, p normalised),
  // before temperature; for tests and --verbose output. Empty after a greedy sample.
  const std::vector<TokenCandidate>& last_candidates() const { return cand_; }

 private:
  void apply_penalties(std::vector<TokenCandidate>& cand) const;

  SamplerParams params_;
  uint32_t seed_;
  std::mt19937 rng_;
  std::deque<int32_t> history_;
  std::vector<TokenCandidate> cand_;
};

}  // namespace tandem
