#include "planner/flat_profile.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>

#include "planner/planner.h"
#include "planner/test_fixtures.h"

using namespace tandem;
using namespace tandem::planner_test;

TEST_CASE("flat_profile: probabilities k/n, chance coactivation, assumed gate activity",
          "[planner][flat_profile]") {
  for (auto [n, k] : {std::pair{8u, 2u}, std::pair{32u, 4u}, std::pair{64u, 6u}, std::pair{5u, 5u},
                      std::pair{1u, 1u}}) {
    const ModelShape shape = tiny_shape(3, n, k);
    const Profile p = flat_profile(shape, "m", "h");
    INFO("n_expert " << n << ", n_expert_used " << k);
    REQUIRE(p.layers.size() == 3);
    CHECK(p.shape == profile_shape(shape));
    CHECK(p.model_name == "m");
    CHECK(p.model_hash == "h");
    for (uint32_t l = 0; l < 3; ++l) {
      double sum = 0;
      for (uint32_t e = 0; e < n; ++e) {
        CHECK(p.activation_probability(l, e) == Approx(double(k) / n).epsilon(1e-12));
        sum += p.activation_probability(l, e);
        CHECK(p.layers[l].experts[e].gate_activity == k_flat_gate_activity);
        CHECK(p.layers[l].experts[e].gate_observations == 0);
      }
      CHECK(sum == Approx(k));  // k experts per token
      // Off the diagonal: P(a and b) = k (k-1) / (n (n-1)) for a uniform k-set.
      if (n > 1) {
        CHECK(static_cast<double>(p.layers[l].coactivation[1]) / static_cast<double>(p.n_tokens) ==
              Approx(double(k) * (k - 1) / (double(n) * (n - 1))));
      }
      CHECK(p.layers[l].lru_hit_rate.front() == 0.0);
      CHECK(p.layers[l].lru_hit_rate.back() == 1.0);
    }
    // profile_from_json's checks (sizes, ranges, symmetric coactivation, monotone curve) pass.
    auto back = profile_from_json(profile_to_json(p), "flat");
    INFO((back.ok() ? std::string() : back.status().message()));
    REQUIRE(back.ok());
    CHECK(back->n_tokens == p.n_tokens);
  }
  CHECK(flat_profile(tiny_shape(1, 8, 2), "m", "h", 3.0).layers[0].experts[0].gate_activity == 1.0);
}

TEST_CASE("flat_profile: the LRU curve is what ProfileBuilder measures on uniform k-sets",
          "[planner][flat_profile]") {
  for (auto [n, k] : {std::pair{8u, 2u}, std::pair{16u, 4u}, std::pair{7u, 3u}}) {
    const ModelShape shape = tiny_shape(1, n, k);
    ProfileBuilder b("m", "h", profile_shape(shape));
    std::mt19937_64 rng(n * 31 + k);
    std::vector<int32_t> ids(n);
    const std::vector<float> w(k, 1.0f / static_cast<float>(k));
    const uint64_t n_tokens = 20000;
    for (uint64_t t = 0; t < n_tokens; ++t) {
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      REQUIRE(b.add_routing(0, t, std::span<const int32_t>(ids.data(), k), w).ok());
    }
    const Profile measured = b.finish();
    const Profile flat = flat_profile(shape, "m", "h");
    INFO("n_expert " << n << ", n_expert_used " << k);
    for (uint32_t c = 0; c <= n; ++c) {
      INFO("cache of " << c);
      // Cold misses (n of 20000 k accesses) are the builder's only difference from the steady
      // state.
      CHECK(flat.layers[0].lru_hit_rate[c] ==
            Approx(measured.layers[0].lru_hit_rate[c]).margin(0.01));
    }
  }
}

TEST_CASE("flat_profile: the planner accepts it, with and without GPU budget",
          "[planner][flat_profile]") {
  const ModelShape shape = tiny_shape(4, 8, 2);
  const Profile p = flat_profile(shape, "m", "h");
  const HardwareProfile hw = test_machine(/*unified=*/false);
  Budget budget;
  budget.gpu_mem = hw.gpus[0].memory_bytes;
  budget.ram = hw.ram_bytes;
  auto plan = make_plan(shape, p, hw, budget, PlanOptions{});
  REQUIRE(plan.ok());
  CHECK(plan->model_hash == "h");
  CHECK(plan->predicted.tokens_per_s > 0);
  // No GPU memory in the budget: nothing on the GPU.
  Budget tight = budget;
  tight.gpu_mem = 0;
  auto cpu_only = make_plan(shape, p, hw, tight, PlanOptions{});
  REQUIRE(cpu_only.ok());
  for (const auto& layer : cpu_only->placement.tiers)
    for (ExpertTier t : layer) CHECK_FALSE(runs_on_gpu(t));
}
