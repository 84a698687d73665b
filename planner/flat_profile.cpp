#include "planner/flat_profile.h"

#include <algorithm>
#include <utility>

namespace tandem {

Profile flat_profile(const ModelShape& shape, std::string model_name, std::string model_hash,
                     double gate_activity) {
  const uint64_t n = std::max<uint32_t>(shape.n_expert, 1);
  const uint64_t k = std::clamp<uint64_t>(shape.n_expert_used, 1, n);
  const double a = std::clamp(gate_activity, 0.0, 1.0);

  Profile p;
  p.model_name = std::move(model_name);
  p.model_hash = std::move(model_hash);
  p.shape = profile_shape(shape);
  // n (n - 1) tokens make both k / n and the chance coactivation k (k-1) / (n (n-1)) whole counts.
  p.n_tokens = n > 1 ? n * (n - 1) : 1;
  const uint64_t count = n > 1 ? k * (n - 1) : 1;

  ExpertProfile x;
  x.activation_count = count;
  x.weight_mass = static_cast<double>(count) / static_cast<double>(k);
  x.gate_observations = 0;
  x.gate_activity = a;
  x.neuron_activity_deciles.fill(a);

  LayerProfile layer;
  layer.experts.assign(n, x);
  layer.coactivation.assign(n * n, k * (k - 1));
  for (uint64_t e = 0; e < n; ++e) layer.coactivation[e * n + e] = count;
  layer.lru_hit_rate.assign(n + 1, 0.0);
  for (uint64_t c = 1; c <= n; ++c) {
    double h = 0;
    for (uint64_t j = 0; j < k && j < c; ++j)
      h += static_cast<double>(c - j) / static_cast<double>(n - j);
    layer.lru_hit_rate[c] = std::min(1.0, h / static_cast<double>(k));
  }
  layer.lru_hit_rate[n] = 1.0;  // exact, whatever the rounding above
  p.layers.assign(shape.n_layer, layer);
  return p;
}

}  // namespace tandem
