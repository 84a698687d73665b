#include "runtime/cache_policy.h"

#include <cmath>
#include <numeric>

namespace tandem {

namespace {

class LruPolicy final : public CachePolicy {
 public:
  LruPolicy(uint32_t n_layer, uint32_t n_expert) : n_expert_(n_expert), last_(size_t{n_layer} * n_expert, 0) {}
  std::string_view name() const override { return "lru"; }
  void on_access(ExpertId id, uint64_t tick) override { last_[key(id)] = tick; }
  void on_evict(ExpertId) override {}
  size_t choose_victim(std::span<const ExpertId> candidates, uint64_t) const override {
    size_t best = 0;
    for (size_t i = 1; i < candidates.size(); ++i) {
      if (last_[key(candidates[i])] < last_[key(candidates[best])]) best = i;
    }
    return best;
  }

 private:
  size_t key(ExpertId id) const { return size_t(id.layer) * n_expert_ + size_t(id.expert); }
  uint32_t n_expert_;
  std::vector<uint64_t> last_;
};

class FrequencyPolicy final : public CachePolicy {
 public:
  FrequencyPolicy(uint32_t n_layer, uint32_t n_expert, std::vector<double> prior, double w, double half_life)
      : n_expert_(n_expert),
        prior_(std::move(prior)),
        w_(prior_.empty() ? 0.0 : w),
        beta_(std::exp2(-1.0 / half_life)),
        crf_(size_t{n_layer} * n_expert, 0.0),
        last_(size_t{n_layer} * n_expert, 0) {}
  std::string_view name() const override { return "frequency"; }
  void on_access(ExpertId id, uint64_t tick) override {
    const size_t k = key(id);
    crf_[k] = decayed(k, tick) + (1.0 - beta_);
    last_[k] = tick;
  }
  // The history survives eviction, as in LRFU: a returning expert keeps its frequency.
  void on_evict(ExpertId) override {}
  size_t choose_victim(std::span<const ExpertId> candidates, uint64_t tick) const override {
    size_t best = 0;
    double best_value = value(key(candidates[0]), tick);
    for (size_t i = 1; i < candidates.size(); ++i) {
      const size_t k = key(candidates[i]);
      const double v = value(k, tick);
      if (v < best_value || (v == best_value && last_[k] < last_[key(candidates[best])])) {
        best = i;
        best_value = v;
      }
    }
    return best;
  }

 private:
  size_t key(ExpertId id) const { return size_t(id.layer) * n_expert_ + size_t(id.expert); }
  double decayed(size_t k, uint64_t tick) const {
    return crf_[k] * std::pow(beta_, static_cast<double>(tick - last_[k]));
  }
  double value(size_t k, uint64_t tick) const {
    return (prior_.empty() ? 0.0 : w_ * prior_[k]) + (1.0 - w_) * decayed(k, tick);
  }

  uint32_t n_expert_;
  std::vector<double> prior_;  // normalised to sum 1, or empty
  double w_;
  double beta_;
  std::vector<double> crf_;     // CRF at last_[k]
  std::vector<uint64_t> last_;  // tick of the last access
};

}  // namespace

std::unique_ptr<CachePolicy> make_lru_policy(uint32_t n_layer, uint32_t n_expert) {
  return std::make_unique<LruPolicy>(n_layer, n_expert);
}

Result<std::unique_ptr<CachePolicy>> make_frequency_policy(uint32_t n_layer, uint32_t n_expert,
                                                           uint32_t n_slots,
                                                           const FrequencyPolicyOptions& options) {
  const size_t n = size_t{n_layer} * n_expert;
  if (!(options.prior_weight >= 0.0 && options.prior_weight <= 1.0)) {
    return make_error(ErrorCode::invalid_argument, "frequency policy: prior_weight {} is outside [0, 1]",
                      options.prior_weight);
  }
  std::vector<double> prior;
  if (!options.prior.empty()) {
    if (options.prior.size() != n) {
      return make_error(ErrorCode::invalid_argument,
                        "frequency policy: prior has {} entries, the model has {} layers x {} experts = {}",
                        options.prior.size(), n_layer, n_expert, n);
    }
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      const double p = options.prior[i];
      if (!std::isfinite(p) || p < 0) {
        return make_error(ErrorCode::invalid_argument,
                          "frequency policy: prior of layer {} expert {} is {} (must be finite and >= 0)",
                          i / n_expert, i % n_expert, p);
      }
      sum += p;
    }
    prior = options.prior;
    if (sum > 0) {
      for (double& p : prior) p /= sum;
    }
  }
  const double half_life = options.half_life > 0 ? options.half_life : 4.0 * std::max<uint32_t>(n_slots, 1);
  return std::unique_ptr<CachePolicy>(
      std::make_unique<FrequencyPolicy>(n_layer, n_expert, std::move(prior), options.prior_weight, half_life));
}

Result<std::vector<double>> expert_priors_from_profile(const Profile& profile, uint32_t n_layer,
                                                       uint32_t n_expert) {
  if (profile.shape.n_layer != n_layer || profile.shape.n_expert != n_expert ||
      profile.layers.size() != n_layer) {
    return make_error(ErrorCode::invalid_argument,
                      "profile of {} has {} layers x {} experts; the cache's model has {} x {}",
                      profile.model_name, profile.shape.n_layer, profile.shape.n_expert, n_layer, n_expert);
  }
  std::vector<double> prior(size_t{n_layer} * n_expert);
  for (uint32_t l = 0; l < n_layer; ++l) {
    for (uint32_t e = 0; e < n_expert; ++e) prior[size_t{l} * n_expert + e] = profile.activation_probability(l, e);
  }
  return prior;
}

}  // namespace tandem
