// flat_profile: the usage profile assumed when none was measured (`tandem run --auto` without
// a `tandem profile` file beside the model). It says "every expert is equally likely, with
// typical ReLU sparsity", so the planner places experts by size and machine alone.
//
// The prior: a token's top-k is a uniformly random set of n_expert_used distinct experts of
// n_expert, independently per token and per layer. Per layer l and expert e:
//   activation probability  n_expert_used / n_expert, exactly: n_tokens = n_expert * (n_expert - 1)
//                           (1 when n_expert == 1), activation_count = n_expert_used * (n_expert -
//                           1) (1 when n_expert == 1), so every count below is a whole number;
//   weight_mass             activation_count / n_expert_used (equal renormalised weights);
//   coactivation            no correlation beyond chance: off the diagonal, the expected count
//                           of a uniform k-set, n_tokens * k (k-1) / (n (n-1)) = k (k-1); the
//                           diagonal is activation_count (profile.h's invariant);
//   gate_activity           `gate_activity` (default k_flat_gate_activity), gate_observations 0
//                           (assumed, not observed); neuron_activity_deciles all equal to it;
//   lru_hit_rate[c]         the exact steady-state hit rate of the layer's LRU of c experts under
//                           this prior, accesses in rank order as ProfileBuilder counts them:
//                           the j-th access of a token (j = 0..k-1) is uniform over the n - j
//                           experts the token has not used yet, which sit at stack positions
//                           j..n-1 (the token's earlier j are on top), so it hits with
//                           probability max(0, c - j) / (n - j);  h(c) = (1/k) sum_j of that.
//                           h(0) = 0, h(n) = 1, non-decreasing (profile.h's checks).
// k_flat_gate_activity = 0.4: SmallThinker's technical report (§1) finds more than 60% of the
// expert neurons idle (ReGLU gate <= 0) per token, spec §5.1; `tandem make-model`'s
// default relu_sparsity 0.6 makes synthetic models match that. The cost model reads only
// gate_activity (cost_model.h: CPU expert time gate_us + a (dense_us - gate_us)).
//
// The result passes profile_from_json's validation (flat_profile_test.cpp round-trips it).
#pragma once

#include <string>

#include "core/model_shape.h"
#include "planner/profile.h"

namespace tandem {

inline constexpr double k_flat_gate_activity = 0.4;

// `shape` must have n_expert >= 1 and 1 <= n_expert_used <= n_expert (as Model::load ensures);
// gate_activity is clamped to [0, 1].
Profile flat_profile(const ModelShape& shape, std::string model_name, std::string model_hash,
                     double gate_activity = k_flat_gate_activity);

}  // namespace tandem
