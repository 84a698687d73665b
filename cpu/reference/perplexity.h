// Reference perplexity of one chunk, as llama-perplexity scores it (tools/perplexity/
// perplexity.cpp: process_logits / log_softmax): only the second half of each chunk is
// scored, so every scored token has at least first tokens of context.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "core/status.h"

namespace tandem::cpu::reference {

struct PerplexityStats {
  double nll_sum = 0.0;  // sum over scored positions of -log p(next token), nats
  int64_t count = 0;     // number of scored positions
  double mean_nll() const { return count ? nll_sum / static_cast<double>(count) : 0.0; }
  double ppl() const { return std::exp(mean_nll()); }  // exp of the mean NLL
};

// logits: (T, n_vocab) row-major for a chunk of T = tokens.size() tokens, row t predicting
// token t+1. Scores positions t in [first, T-1): -log softmax(logits[t])[tokens[t+1]], the
// log-softmax in f64 (max-subtracted). first < 0 means llama-perplexity's T/2.
// Stats of several chunks add up (sum nll_sum and count) before taking ppl().
// Errors: invalid_argument when T < 2, n_vocab <= 0, logits.size() != T*n_vocab, first is
// outside [0, T-1), or a scored token id is outside [0, n_vocab).
Result<PerplexityStats> perplexity(std::span<const float> logits, int64_t n_vocab,
                                   std::span<const int32_t> tokens, int64_t first = -1);

}  // namespace tandem::cpu::reference
