// Profile: how a model's experts are used on a workload — what the planner optimises for.
// Collected by ProfileBuilder from the forward pass's routing and gate-activity events.
//
// Per layer l and expert e (0-based, ExpertId order):
//   activation_count   tokens whose top-k included e (at most once per token)
//   weight_mass        sum over those tokens of e's renormalised routing weight
//   coactivation[a*n_expert+b]  tokens whose top-k included both a and b (symmetric; the
//                      diagonal equals activation_count)
//   gate_observations  token activations whose gate outputs were recorded
//   gate_activity      fraction of gate outputs > 0 over those observations (ReLU sparsity,
//                      spec §5.1); 1.0 when gate_observations == 0 (assume dense)
//   neuron_activity_deciles  11 values: the 0th, 10th, ..., 100th percentile over the
//                      n_ff_exp neurons of each neuron's active fraction (all 1.0 when unobserved)
// Per layer: lru_hit_rate[c], c = 0..n_expert: the fraction of that layer's expert accesses
// an LRU cache of c experts (of this layer, starting empty) would have hit. A token accesses
// its k experts in the order given (top-1 first). Computed exactly for every c in one pass by
// stack distances (Mattson et al. 1970, "Evaluation techniques for storage hierarchies").
//
// JSON (schema_version 1): { "schema_version", "model_name", "model_hash", "n_tokens",
//   "shape": {"n_layer","n_expert","n_expert_used","n_embd","n_ff_exp"},
//   "layers": [ { "lru_hit_rate": [n_expert+1 numbers in [0,1]],
//                 "coactivation": [n_expert*n_expert integers, row-major],
//                 "experts": [ { "activation_count", "weight_mass", "gate_observations",
//                                "gate_activity", "neuron_activity_deciles": [11] } ] } ] }
// Validated on read: sizes match the shape, counts <= n_tokens, rates in [0,1], coactivation
// symmetric with the activation counts on its diagonal.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"

namespace tandem {

// The part of ModelShape a profile depends on; compared with the model's when planning.
struct ProfileShape {
  uint32_t n_layer = 0;
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  uint32_t n_embd = 0;
  uint32_t n_ff_exp = 0;
  friend bool operator==(const ProfileShape&, const ProfileShape&) = default;
};
ProfileShape profile_shape(const ModelShape& shape);

struct ExpertProfile {
  uint64_t activation_count = 0;
  double weight_mass = 0;
  uint64_t gate_observations = 0;
  double gate_activity = 1.0;
  std::array<double, 11> neuron_activity_deciles{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
};

struct LayerProfile {
  std::vector<ExpertProfile> experts;   // n_expert
  std::vector<uint64_t> coactivation;   // n_expert * n_expert, row-major
  std::vector<double> lru_hit_rate;     // n_expert + 1
};

struct Profile {
  static constexpr int k_schema_version = 1;

  std::string model_name;
  std::string model_hash;  // Model::content_hash() of the profiled model
  ProfileShape shape;
  uint64_t n_tokens = 0;
  std::vector<LayerProfile> layers;  // n_layer

  // Probability that a token's top-k includes expert e of layer l (activation_count / n_tokens).
  double activation_probability(uint32_t layer, uint32_t expert) const;
};

Result<Profile> profile_from_json(std::string_view text, std::string_view display_name);
std::string profile_to_json(const Profile& profile);
Result<Profile> load_profile(const std::filesystem::path& path);
Status save_profile(const Profile& profile, const std::filesystem::path& path);

// Accumulates a Profile from the forward pass's events. Not thread-safe: one builder per
// stream of events (the forward observer calls it from one thread).
class ProfileBuilder {
 public:
  ProfileBuilder(std::string model_name, std::string model_hash, ProfileShape shape);

  // Token `token`'s routing in `layer`: its top-k expert ids (rank order) and their weights.
  // Errors (invalid_argument): layer or an expert out of range, a repeated expert, sizes of
  // `experts` and `weights` differing or above n_expert_used, a weight not finite or < 0,
  // or a token index not above the previous one of the same layer.
  Status add_routing(uint32_t layer, uint64_t token, std::span<const int32_t> experts,
                     std::span<const float> weights);

  // Gate activity of one expert over `n_observations` token activations: active_counts[j]
  // (n_ff_exp values, each <= n_observations) counts the observations with gate output j > 0.
  Status add_gate_counts(uint32_t layer, uint32_t expert, std::span<const uint32_t> active_counts,
                         uint32_t n_observations);
  // One observation as a bitmask: bit j of mask[j / 64] set when gate output j > 0
  // (ceil(n_ff_exp / 64) words; bits past n_ff_exp must be 0).
  Status add_gate_mask(uint32_t layer, uint32_t expert, std::span<const uint64_t> mask);

  Profile finish() const;

 private:
  ProfileShape shape_;
  std::string model_name_;
  std::string model_hash_;
  struct LayerState {
    std::vector<uint64_t> count;          // n_expert
    std::vector<double> mass;             // n_expert
    std::vector<uint64_t> coactivation;   // n_expert^2
    std::vector<int32_t> lru_stack;       // most recent first
    std::vector<uint64_t> distance_hist;  // [d] accesses at stack distance d; [n_expert]: cold
    uint64_t n_accesses = 0;
    uint64_t n_tokens = 0;
    uint64_t last_token = 0;
    std::vector<uint64_t> gate_obs;       // n_expert
    std::vector<uint64_t> neuron_active;  // n_expert * n_ff_exp
  };
  std::vector<LayerState> layers_;
};

}  // namespace tandem
