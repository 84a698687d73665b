// CachePolicy: which resident expert the ExpertCache evicts when it needs a slot.
//
// The cache calls on_access() for every access (request/prefetch/acquire) with a logical
// clock `tick` that grows by one per access, and choose_victim() with the experts that may
// be evicted (present, not pinned, not referenced). Experts are keyed densely by
// layer * n_expert + expert. Policies are not thread-safe: the cache calls them under its lock.
//
// Two policies:
//   lru        evict the least recently accessed candidate (PowerInfer's expert cache,
//              spec §5.2: one LRU over all layers).
//   frequency  LRFU with a prior. LRFU (Lee et al., IEEE Trans. Computers 2001, "LRFU: a
//              spectrum of policies that subsumes the LRU and LFU policies") keeps a combined
//              recency-frequency value CRF(x) = sum over past accesses a of F(now - t_a), with
//              F(d) = (1 - beta) * beta^d and beta = 2^(-1 / half_life): an exponentially
//              decayed access count, i.e. an estimate of the probability that the next access
//              is x. We blend it with the profile's prior estimate of the same quantity,
//                value(x) = w * prior(x) + (1 - w) * CRF(x),
//              prior(x) = activation_probability(l, e) / sum over all (l, e) of it (so the
//              priors also sum to 1 over all experts), and evict the lowest value (ties: the
//              least recently accessed). A cold expert touched once is worth less than a
//              hot expert whose last use is long past, which LRU cannot express: it wins when
//              a hot set recurs at a distance larger than the cache but fits in it.
//              half_life (in accesses) defaults to 4 x the number of cache slots.
//
// Cost: choose_victim scans the candidates, O(slots) per eviction (a 21B cache of ~6k
// slots scans in microseconds, next to a ~1 MB read).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "planner/profile.h"

namespace tandem {

class CachePolicy {
 public:
  virtual ~CachePolicy() = default;
  virtual std::string_view name() const = 0;
  virtual void on_access(ExpertId id, uint64_t tick) = 0;
  // `id` left the cache (evicted, or its load failed).
  virtual void on_evict(ExpertId id) = 0;
  // Index into `candidates` (non-empty) of the expert to evict at time `tick`.
  virtual size_t choose_victim(std::span<const ExpertId> candidates, uint64_t tick) const = 0;
};

std::unique_ptr<CachePolicy> make_lru_policy(uint32_t n_layer, uint32_t n_expert);

struct FrequencyPolicyOptions {
  // Prior weight of each expert, indexed layer * n_expert + expert; any non-negative scale
  // (normalised to sum 1). Empty: no prior (plain LRFU).
  std::vector<double> prior;
  double prior_weight = 0.5;  // w in [0, 1]
  double half_life = 0;       // accesses; <= 0: 4 x n_slots
};

// Errors: invalid_argument when the prior has the wrong size, a negative or non-finite
// entry, or prior_weight lies outside [0, 1].
Result<std::unique_ptr<CachePolicy>> make_frequency_policy(uint32_t n_layer, uint32_t n_expert,
                                                           uint32_t n_slots,
                                                           const FrequencyPolicyOptions& options);

// Per-expert activation probabilities from a profile, indexed layer * n_expert + expert
// (invalid_argument when the profile's shape disagrees with n_layer / n_expert).
Result<std::vector<double>> expert_priors_from_profile(const Profile& profile, uint32_t n_layer,
                                                       uint32_t n_expert);

}  // namespace tandem
