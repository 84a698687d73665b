#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

namespace tandem {
namespace {

bool by_logit_desc(const TokenCandidate& a, const TokenCandidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// p = softmax(logit) over cand (sorted descending, so cand[0] holds the max).
void softmax_sorted(std::vector<TokenCandidate>& cand) {
  const float max_logit = cand[0].logit;
  double sum = 0.0;
  for (auto& c : cand) {
    c.p = std::exp(c.logit - max_logit);
    sum += c.p;
  }
  for (auto& c : cand) c.p = static_cast<float>(c.p / sum);
}

}  // namespace

Sampler::Sampler(const SamplerParams& params)
    : params_(params), seed_(params.seed == 0xFFFFFFFFu ? std::random_device{}() : params.seed), rng_(seed_) {}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  history_.push_back(token);
  if (params_.repeat_last_n > 0 && history_.size() > static_cast<size_t>(params_.repeat_last_n)) history_.pop_front();
}

void Sampler::reset() { history_.clear(); }

void Sampler::apply_penalties(std::vector<TokenCandidate>& cand) const {
  if (history_.empty() || (params_.repeat_penalty == 1.0f && params_.frequency_penalty == 0.0f &&
                           params_.presence_penalty == 0.0f)) {
    return;
  }
  std::unordered_map<int32_t, int32_t> count;
  for (int32_t t : history_) ++count[t];
  for (auto [id, c] : count) {
    if (id < 0 || static_cast<size_t>(id) >= cand.size()) continue;
    float& l = cand[id].logit;  // cand is still in id order here
    l = l > 0.0f ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    l -= static_cast<float>(c) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::sample(std::span<const float> logits) {
  cand_.clear();
  if (logits.empty()) return -1;
  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i];
    cand_[i] = {static_cast<int32_t>(i), l, 0.0f};
  }
  apply_penalties(cand_);

  if (params_.temp <= 0.0f) {
    const auto best = std::min_element(cand_.begin(), cand_.end(), by_logit_desc);
    const int32_t id = best->id;
    cand_.clear();
    return id;
  }

  // top_k: partial sort keeps this O(n + k log k) for a 151,936-entry vocabulary.
  const size_t k = params_.top_k > 0 ? std::min(cand_.size(), static_cast<size_t>(params_.top_k)) : cand_.size();
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<ptrdiff_t>(k), cand_.end(), by_logit_desc);
  cand_.resize(k);
  if (std::isinf(cand_[0].logit)) {  // +inf wins outright; all -inf leaves nothing to weigh
    cand_.resize(1);
    cand_[0].p = 1.0f;
    return cand_[0].id;
  }

  if (params_.top_p < 1.0f) {
    softmax_sorted(cand_);
    double cum = 0.0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }

  if (params_.min_p > 0.0f) {
    const float min_logit = cand_[0].logit + std::log(params_.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= min_logit) ++keep;
    cand_.resize(keep);
  }
  softmax_sorted(cand_);  // probabilities of the survivors, for last_candidates()

  // temperature then dist: the temperature-scaled softmax over the survivors.
  const float max_logit = cand_[0].logit;
  std::vector<double> w(cand_.size());
  double sum = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    w[i] = std::exp(static_cast<double>(cand_[i].logit - max_logit) / params_.temp);
    sum += w[i];
  }
  const double u = static_cast<double>(rng_()) / 4294967296.0 * sum;
  double cum = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += w[i];
    if (u < cum) return cand_[i].id;
  }
  return cand_.back().id;  // rounding left u just above the total
}

}  // namespace tandem
