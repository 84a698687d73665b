#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

Status router_probs(ExpertGating gating, std::span<const float> logits, std::span<float> probs) {
  assert(probs.size() == logits.size());
  switch (gating) {
    case ExpertGating::sigmoid:
      for (size_t i = 0; i < logits.size(); ++i)
        probs[i] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logits[i]))));
      return Status::success();
    case ExpertGating::softmax:
      soft_max(logits, probs);
      return Status::success();
    case ExpertGating::none:
      break;
  }
  return make_error(ErrorCode::invalid_argument,
                    "router gating function is 'none' ({}): expected softmax (1) or sigmoid (2)",
                    static_cast<uint32_t>(gating));
}

std::vector<int32_t> top_k(std::span<const float> x, int64_t k) {
  const int64_t n = static_cast<int64_t>(x.size());
  k = std::clamp<int64_t>(k, 0, n);
  // NaN compares false with everything, which would break the sort's ordering: rank it lowest.
  auto key = [&](int32_t i) {
    const float v = x[static_cast<size_t>(i)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  };
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // stable: equal values keep ascending index order, i.e. ties go to the lower expert id.
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return key(a) > key(b); });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

Result<TokenRouting> route(ExpertGating gating, std::span<const float> logits, int64_t k) {
  if (k < 1 || k > static_cast<int64_t>(logits.size()))
    return make_error(ErrorCode::invalid_argument,
                      "n_expert_used = {} is outside [1, n_expert = {}]", k, logits.size());
  std::vector<float> probs(logits.size());
  TANDEM_RETURN_IF_ERROR(router_probs(gating, logits, probs));
  TokenRouting r;
  r.experts = top_k(probs, k);
  double sum = 0.0;
  for (int32_t e : r.experts) sum += probs[static_cast<size_t>(e)];
  sum = std::max(sum, static_cast<double>(k_router_weight_sum_min));
  r.weights.reserve(r.experts.size());
  for (int32_t e : r.experts)
    r.weights.push_back(static_cast<float>(probs[static_cast<size_t>(e)] / sum));
  return r;
}

}  // namespace tandem::cpu::reference
