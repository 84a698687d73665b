#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>

namespace tandem {

Result<PerplexityResult> perplexity(Executor& executor, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options, const PerplexityProgress& progress) {
  const uint32_t n_ctx = options.n_ctx;
  if (n_ctx < 4) return make_error(ErrorCode::invalid_argument, "perplexity: context (-c) {} is too small", n_ctx);
  if (executor.n_ctx() < n_ctx) {
    return make_error(ErrorCode::invalid_argument, "perplexity: the KV cache holds {} positions, the chunks need {}",
                      executor.n_ctx(), n_ctx);
  }
  if (tokens.size() < 2 * static_cast<size_t>(n_ctx)) {
    return make_error(ErrorCode::invalid_argument,
                      "perplexity: you need at least {} tokens to evaluate perplexity with a context of {} (the text "
                      "has {} tokens)",
                      2 * static_cast<size_t>(n_ctx), n_ctx, tokens.size());
  }
  const uint32_t first = n_ctx / 2;
  PerplexityResult res;
  res.n_chunk = static_cast<uint32_t>(tokens.size() / n_ctx);
  double nll = 0.0;
  double nll2 = 0.0;
  std::vector<int32_t> chunk(n_ctx);
  std::vector<float> logits;
  for (uint32_t c = 0; c < res.n_chunk; ++c) {
    const size_t start = static_cast<size_t>(c) * n_ctx;
    std::copy_n(tokens.begin() + static_cast<ptrdiff_t>(start), n_ctx, chunk.begin());
    if (options.bos) chunk[0] = *options.bos;
    executor.clear();
    TANDEM_RETURN_IF_ERROR(executor.eval(chunk, LogitsRows::all, logits));
    const int64_t n_vocab = static_cast<int64_t>(logits.size() / n_ctx);
    for (uint32_t j = first; j + 1 < n_ctx; ++j) {
      const float* row = logits.data() + static_cast<int64_t>(j) * n_vocab;
      const float mx = *std::max_element(row, row + n_vocab);
      double sum = 0.0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      // The target is the original text's token (BOS only replaces the chunk's input).
      const int32_t target = tokens[start + j + 1];
      const double v = -(static_cast<double>(row[target]) - mx - std::log(sum));
      nll += v;
      nll2 += v * v;
      ++res.count;
    }
    res.running_ppl.push_back(std::exp(nll / static_cast<double>(res.count)));
    if (progress) progress(c, res.running_ppl.back());
  }
  executor.clear();
  const double mean = nll / static_cast<double>(res.count);
  const double mean2 = nll2 / static_cast<double>(res.count);
  res.ppl = std::exp(mean);
  const double var = mean2 - mean * mean;
  res.ppl_error = var > 0.0 && res.count > 1 ? std::sqrt(var / static_cast<double>(res.count - 1)) * res.ppl : 0.0;
  return res;
}

}  // namespace tandem
