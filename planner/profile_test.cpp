#include "planner/profile.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <list>
#include <random>

#include "planner/test_fixtures.h"

using namespace tandem;
using tandem::planner_test::RoutingGen;

namespace {

// Direct simulation: one LRU cache of `capacity` experts, accesses in the given order.
double simulate_lru(const std::vector<std::vector<int32_t>>& tokens, size_t capacity) {
  std::list<int32_t> lru;
  uint64_t hits = 0, total = 0;
  for (const auto& ids : tokens) {
    for (int32_t e : ids) {
      ++total;
      auto it = std::find(lru.begin(), lru.end(), e);
      if (it != lru.end()) {
        ++hits;
        lru.erase(it);
      } else if (capacity > 0 && lru.size() == capacity) {
        lru.pop_back();
      }
      if (capacity > 0) lru.push_front(e);
    }
  }
  return total ? static_cast<double>(hits) / static_cast<double>(total) : 0.0;
}

ProfileShape small_shape(uint32_t n_layer, uint32_t n_expert, uint32_t k, uint32_t n_ff = 70) {
  return {n_layer, n_expert, k, 64, n_ff};
}

}  // namespace

TEST_CASE("profile: LRU hit rate for every cache size equals direct LRU simulation", "[planner][profile]") {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    const uint32_t n_expert = 3 + static_cast<uint32_t>(seed * 5 % 29);
    const uint32_t k = 1 + static_cast<uint32_t>(seed % std::min<uint64_t>(n_expert, 6));
    const uint32_t n_layer = 2;
    ProfileBuilder b("m", "h", small_shape(n_layer, n_expert, k));
    std::vector<std::vector<std::vector<int32_t>>> trace(n_layer);
    for (uint32_t l = 0; l < n_layer; ++l) {
      RoutingGen gen(seed * 10 + l, n_expert, k, 0.3 + 0.4 * static_cast<double>(l), 0.3);
      std::vector<float> w(k, 0.5f);
      for (uint64_t t = 0; t < 300; ++t) {
        trace[l].push_back(gen.next());
        REQUIRE(b.add_routing(l, t, trace[l].back(), w).ok());
      }
    }
    const Profile p = b.finish();
    REQUIRE(p.n_tokens == 300);
    for (uint32_t l = 0; l < n_layer; ++l) {
      REQUIRE(p.layers[l].lru_hit_rate.size() == n_expert + 1);
      for (size_t c = 0; c <= n_expert; ++c) {
        INFO("seed " << seed << " layer " << l << " cache " << c);
        REQUIRE(p.layers[l].lru_hit_rate[c] == Approx(simulate_lru(trace[l], c)).margin(1e-12));
      }
    }
  }
}

TEST_CASE("profile: builder counts activations, mass, co-activation and gate activity", "[planner][profile]") {
  ProfileBuilder b("m", "h", small_shape(1, 4, 2, 70));
  const int32_t a[] = {0, 2}, c[] = {2, 3};
  const float wa[] = {0.75f, 0.25f}, wc[] = {0.5f, 0.5f};
  REQUIRE(b.add_routing(0, 0, a, wa).ok());
  REQUIRE(b.add_routing(0, 1, c, wc).ok());
  REQUIRE(b.add_routing(0, 5, a, wa).ok());
  // Expert 2: two observations; neuron j active in the first when j < 35, in the second
  // when j is even -> total 35 + 35 = 70 of 140.
  std::vector<uint64_t> m1(2, 0), m2(2, 0);
  for (uint32_t j = 0; j < 70; ++j) {
    if (j < 35) m1[j / 64] |= uint64_t{1} << (j % 64);
    if (j % 2 == 0) m2[j / 64] |= uint64_t{1} << (j % 64);
  }
  REQUIRE(b.add_gate_mask(0, 2, m1).ok());
  REQUIRE(b.add_gate_mask(0, 2, m2).ok());
  std::vector<uint32_t> counts(70, 3);
  REQUIRE(b.add_gate_counts(0, 1, counts, 4).ok());
  const Profile p = b.finish();
  const auto& L = p.layers[0];
  CHECK(p.n_tokens == 3);
  CHECK(L.experts[0].activation_count == 2);
  CHECK(L.experts[2].activation_count == 3);
  CHECK(L.experts[1].activation_count == 0);
  CHECK(L.experts[2].weight_mass == Approx(0.25 + 0.5 + 0.25));
  CHECK(p.activation_probability(0, 2) == Approx(1.0));
  CHECK(L.coactivation[0 * 4 + 2] == 2);
  CHECK(L.coactivation[2 * 4 + 3] == 1);
  CHECK(L.coactivation[3 * 4 + 2] == 1);
  CHECK(L.coactivation[2 * 4 + 2] == 3);
  CHECK(L.experts[2].gate_observations == 2);
  CHECK(L.experts[2].gate_activity == Approx(0.5));
  // Per-neuron rates of expert 2 are 0 (odd j >= 35), 0.5 and 1 (even j < 35).
  CHECK(L.experts[2].neuron_activity_deciles[0] == 0.0);
  CHECK(L.experts[2].neuron_activity_deciles[10] == 1.0);
  CHECK(L.experts[1].gate_activity == Approx(0.75));
  CHECK(L.experts[1].neuron_activity_deciles[5] == Approx(0.75));
  CHECK(L.experts[3].gate_observations == 0);
  CHECK(L.experts[3].gate_activity == 1.0);
  // Sequence 0,2 | 2,3 | 0,2: stack distances cold, cold, 0, cold, 2, 2
  // -> hits at c=1: 1/6, c=2: 1/6, c=3: 3/6.
  CHECK(L.lru_hit_rate[1] == Approx(1.0 / 6));
  CHECK(L.lru_hit_rate[2] == Approx(1.0 / 6));
  CHECK(L.lru_hit_rate[3] == Approx(3.0 / 6));
  CHECK(L.lru_hit_rate[4] == Approx(3.0 / 6));
}

TEST_CASE("profile: builder rejects malformed events", "[planner][profile]") {
  ProfileBuilder b("m", "h", small_shape(2, 4, 2, 70));
  const int32_t ok_ids[] = {0, 1}, bad_id[] = {0, 4}, dup[] = {1, 1}, three[] = {0, 1, 2};
  const float w2[] = {0.5f, 0.5f}, w3[] = {0.3f, 0.3f, 0.4f}, wneg[] = {0.5f, -1.0f};
  auto msg = [](const Status& s) { return s.message(); };
  CHECK_THAT(msg(b.add_routing(2, 0, ok_ids, w2)), Catch::Contains("layer 2 out of range"));
  CHECK_THAT(msg(b.add_routing(0, 0, bad_id, w2)), Catch::Contains("expert id 4 out of range"));
  CHECK_THAT(msg(b.add_routing(0, 0, dup, w2)), Catch::Contains("selected twice"));
  CHECK_THAT(msg(b.add_routing(0, 0, three, w3)), Catch::Contains("n_expert_used 2"));
  CHECK_THAT(msg(b.add_routing(0, 0, ok_ids, wneg)), Catch::Contains("not finite"));
  REQUIRE(b.add_routing(0, 3, ok_ids, w2).ok());
  CHECK_THAT(msg(b.add_routing(0, 3, ok_ids, w2)), Catch::Contains("token 3 does not follow token 3"));
  std::vector<uint64_t> mask(2, 0);
  mask[1] = uint64_t{1} << 10;  // bit 74 >= n_ff_exp 70
  CHECK_THAT(msg(b.add_gate_mask(0, 0, mask)), Catch::Contains("past n_ff_exp"));
  CHECK_THAT(msg(b.add_gate_mask(0, 0, std::vector<uint64_t>(1, 0))), Catch::Contains("mask words"));
  std::vector<uint32_t> counts(70, 5);
  CHECK_THAT(msg(b.add_gate_counts(0, 0, counts, 4)), Catch::Contains("active 5 times in 4"));
  CHECK_THAT(msg(b.add_gate_counts(0, 9, counts, 9)), Catch::Contains("out of range"));
}

TEST_CASE("profile: JSON round trip is exact", "[planner][profile]") {
  const Profile p = planner_test::random_profile(planner_test::tiny_shape(3, 5, 2), 42, 64);
  auto back = profile_from_json(profile_to_json(p), "p.json");
  REQUIRE(back.ok());
  CHECK(back->model_name == p.model_name);
  CHECK(back->model_hash == p.model_hash);
  CHECK(back->shape == p.shape);
  CHECK(back->n_tokens == p.n_tokens);
  REQUIRE(back->layers.size() == p.layers.size());
  for (size_t l = 0; l < p.layers.size(); ++l) {
    CHECK(back->layers[l].lru_hit_rate == p.layers[l].lru_hit_rate);
    CHECK(back->layers[l].coactivation == p.layers[l].coactivation);
    for (size_t e = 0; e < p.layers[l].experts.size(); ++e) {
      const auto& a = back->layers[l].experts[e];
      const auto& b = p.layers[l].experts[e];
      CHECK(a.activation_count == b.activation_count);
      CHECK(a.weight_mass == b.weight_mass);
      CHECK(a.gate_observations == b.gate_observations);
      CHECK(a.gate_activity == b.gate_activity);
      CHECK(a.neuron_activity_deciles == b.neuron_activity_deciles);
    }
  }
  CHECK(profile_to_json(*back) == profile_to_json(p));
}

TEST_CASE("profile: malformed JSON files are rejected naming the path", "[planner][profile]") {
  const Profile p = planner_test::random_profile(planner_test::tiny_shape(2, 3, 2), 7, 32);
  const std::string good = profile_to_json(p);
  auto edit = [&](auto fn) {
    auto j = nlohmann::json::parse(good);
    fn(j);
    return j.dump();
  };
  using J = nlohmann::json;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "p.json: not valid JSON (byte offset"},
      {"[1, 2]", "(top level) must be an object"},
      {edit([](J& j) { j["schema_version"] = 2; }), "schema_version 2 is not supported (expected 1)"},
      {edit([](J& j) { j.erase("schema_version"); }), "schema_version is missing"},
      {edit([](J& j) { j.erase("model_hash"); }), "model_hash is missing"},
      {edit([](J& j) { j["model_name"] = 3; }), "model_name must be a string"},
      {edit([](J& j) { j["n_tokens"] = -1; }), "n_tokens must be a non-negative integer"},
      {edit([](J& j) { j["shape"]["n_expert_used"] = 9; }), "shape.n_expert_used must be in [1, 3]"},
      {edit([](J& j) { j["layers"].erase(1); }), "layers must have 2 elements, has 1"},
      {edit([](J& j) { j["layers"][1]["lru_hit_rate"][2] = 1.5; }), "layers[1].lru_hit_rate[2] must be in [0, 1]"},
      {edit([](J& j) { j["layers"][0]["lru_hit_rate"][3] = 0.0; }), "layers[0].lru_hit_rate[3] must not be below"},
      {edit([](J& j) { j["layers"][0]["experts"][1]["activation_count"] = 1000; }),
       "layers[0].experts[1].activation_count must be in [0, 32]"},
      {edit([](J& j) { j["layers"][0]["experts"][2]["gate_activity"] = "x"; }),
       "layers[0].experts[2].gate_activity must be a number"},
      {edit([](J& j) { j["layers"][0]["experts"][0]["neuron_activity_deciles"].erase(0); }),
       "neuron_activity_deciles must have 11 elements"},
      {edit([](J& j) { j["layers"][1]["coactivation"][1] = 31; }), "layers[1].coactivation[3] must equal element 1 (symmetric)"},
      {edit([](J& j) { j["layers"][0]["experts"][0]["activaton_count"] = 1; }),
       "layers[0].experts[0].activaton_count is not a known field"},
  };
  for (const auto& [text, fragment] : cases) {
    INFO(fragment);
    auto r = profile_from_json(text, "p.json");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains(fragment));
    CHECK_THAT(r.status().message(), Catch::StartsWith("p.json: "));
  }
}
