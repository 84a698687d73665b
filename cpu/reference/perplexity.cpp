#include "cpu/reference/perplexity.h"

#include <algorithm>
#include <limits>

namespace tandem::cpu::reference {

Result<PerplexityStats> perplexity(std::span<const float> logits, int64_t n_vocab,
                                   std::span<const int32_t> tokens, int64_t first) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T < 2)
    return make_error(ErrorCode::invalid_argument, "perplexity: a chunk needs >= 2 tokens, got {}",
                      T);
  if (n_vocab <= 0)
    return make_error(ErrorCode::invalid_argument, "perplexity: n_vocab = {}", n_vocab);
  if (static_cast<int64_t>(logits.size()) != T * n_vocab)
    return make_error(ErrorCode::invalid_argument,
                      "perplexity: {} logits for T = {} tokens and n_vocab = {}", logits.size(), T,
                      n_vocab);
  if (first < 0) first = T / 2;
  if (first >= T - 1)
    return make_error(ErrorCode::invalid_argument,
                      "perplexity: first = {} leaves nothing to score in T = {}", first, T);

  PerplexityStats st;
  for (int64_t t = first; t < T - 1; ++t) {
    const int32_t next = tokens[static_cast<size_t>(t + 1)];
    if (next < 0 || next >= n_vocab)
      return make_error(ErrorCode::invalid_argument,
                        "perplexity: token {} at position {} is outside [0, n_vocab = {})", next,
                        t + 1, n_vocab);
    const auto row = logits.subspan(static_cast<size_t>(t * n_vocab), static_cast<size_t>(n_vocab));
    double max = -std::numeric_limits<double>::infinity();
    for (float l : row) max = std::max(max, static_cast<double>(l));
    double sum_exp = 0.0;
    for (float l : row) sum_exp += std::exp(static_cast<double>(l) - max);
    st.nll_sum += -(static_cast<double>(row[static_cast<size_t>(next)]) - max - std::log(sum_exp));
    ++st.count;
  }
  return st;
}

}  // namespace tandem::cpu::reference
