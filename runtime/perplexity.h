// Perplexity by llama-perplexity's method (llama.cpp tools/perplexity/perplexity.cpp,
// `perplexity()`): the tokenized text is cut into n_chunk = n_tokens / n_ctx chunks of n_ctx
// tokens; each chunk is evaluated from an empty KV cache with its first token replaced by BOS
// when the vocabulary adds one; the tokens at positions first = n_ctx/2 … n_ctx-2 each
// predict the next one, and their negative log-likelihoods
//   nll_j = -log softmax(logits_j)[token_{j+1}]
// are accumulated over all chunks. After chunk i the running value exp(Σ nll / count) is
// reported; the final estimate is PPL = exp(mean nll) with the standard error
//   PPL * sqrt((mean(nll²) - mean(nll)²) / (count - 1))
// exactly as llama.cpp prints "Final estimate: PPL = X +/- Y".
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/status.h"
#include "runtime/executor.h"

namespace tandem {

struct PerplexityOptions {
  uint32_t n_ctx = 512;           // chunk size in tokens; the cache must hold n_ctx positions
  std::optional<int32_t> bos;     // set when the vocabulary adds BOS: the first token of each chunk
};

struct PerplexityResult {
  std::vector<double> running_ppl;  // after each chunk
  double ppl = 0.0;
  double ppl_error = 0.0;           // 0 when the variance estimate is not positive
  uint64_t count = 0;               // tokens scored
  uint32_t n_chunk = 0;
};

// Called after each chunk with its 0-based index and the running perplexity.
using PerplexityProgress = std::function<void(uint32_t chunk, double running_ppl)>;

// The executor's cache is cleared before each chunk and at the end.
// Errors: invalid_argument when n_ctx < 4, when the cache is smaller than n_ctx, or when
// tokens.size() < 2 * n_ctx ("you need at least … tokens", as llama.cpp); eval's errors.
Result<PerplexityResult> perplexity(Executor& executor, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options, const PerplexityProgress& progress = {});

}  // namespace tandem
