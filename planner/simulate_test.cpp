#include "planner/simulate.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "planner/planner.h"
#include "planner/test_fixtures.h"

using namespace tandem;
using namespace tandem::planner_test;

namespace {

// A routing trace and the profile built from the same routing.
struct TraceAndProfile {
  RoutingTrace trace;
  Profile profile;
};

TraceAndProfile make_trace(const ModelShape& shape, uint64_t seed, uint32_t n_tokens) {
  TraceAndProfile out;
  out.trace.model_hash = "hash-x";
  out.trace.n_layer = shape.n_layer;
  out.trace.n_expert = shape.n_expert;
  ProfileBuilder b("m", "hash-x", profile_shape(shape));
  std::vector<RoutingGen> gens;
  for (uint32_t l = 0; l < shape.n_layer; ++l) gens.emplace_back(seed + l, shape.n_expert, shape.n_expert_used, 1.0, 0.3);
  std::vector<float> w(shape.n_expert_used, 1.0f);
  for (uint32_t t = 0; t < n_tokens; ++t) {
    std::vector<std::vector<int32_t>> layers;
    for (uint32_t l = 0; l < shape.n_layer; ++l) {
      layers.push_back(gens[l].next());
      REQUIRE(b.add_routing(l, t, layers.back(), w).ok());
    }
    out.trace.tokens.push_back(std::move(layers));
  }
  out.profile = b.finish();
  return out;
}

Plan plan_for(const ModelShape& shape, const Profile& profile, const HardwareProfile& hw, Budget budget) {
  auto p = make_plan(shape, profile, hw, budget, PlanOptions{});
  REQUIRE(p.ok());
  return std::move(p).value();
}

}  // namespace

TEST_CASE("simulate: RAM cache hit rate equals the profile's LRU curve on the same routing", "[planner][simulate]") {
  const ModelShape shape = tiny_shape(3, 8, 2);
  const auto tp = make_trace(shape, 9, 300);
  const HardwareProfile hw = test_machine(false);
  Plan plan = plan_for(shape, tp.profile, hw, Budget{0, 1ull << 30, Objective::decode});
  for (uint32_t c = 1; c <= shape.n_expert; ++c) {
    // Every expert on storage through c cache slots: an LRU of c over all the layer's uses.
    for (auto& layer : plan.placement.tiers) std::fill(layer.begin(), layer.end(), ExpertTier::storage);
    plan.placement.ram_cache_experts = c;
    auto r = simulate(tp.trace, plan, hw);
    REQUIRE(r.ok());
    double expected = 0;
    for (const auto& L : tp.profile.layers) expected += L.lru_hit_rate[c];
    // Every layer has the same number of uses (n_expert_used per token).
    INFO("cache " << c);
    CHECK(r->storage.hit_rate() == Approx(expected / shape.n_layer).margin(1e-12));
    CHECK(r->storage_bytes_per_token ==
          Approx(static_cast<double>(r->storage.uses - r->storage.hits) * static_cast<double>(plan.expert_bytes) / 300));
    CHECK(r->upload_bytes_per_token == 0);
  }
}

TEST_CASE("simulate: pinned and RAM experts always hit and move nothing; warm-up is excluded", "[planner][simulate]") {
  const ModelShape shape = tiny_shape(2, 6, 2);
  const auto tp = make_trace(shape, 3, 100);
  const HardwareProfile hw = test_machine(false);
  Plan plan = plan_for(shape, tp.profile, hw, Budget{1ull << 30, 1ull << 30, Objective::decode});
  for (auto& layer : plan.placement.tiers) {
    for (size_t e = 0; e < layer.size(); ++e) layer[e] = e % 2 ? ExpertTier::gpu_pinned : ExpertTier::ram_cpu;
  }
  auto r = simulate(tp.trace, plan, hw, SimulateOptions{10, 0});
  REQUIRE(r.ok());
  CHECK(r->n_tokens == 90);
  CHECK(r->gpu_pinned.uses + r->ram_cpu.uses == 90u * 2 * 2);
  CHECK(r->gpu_pinned.hit_rate() == 1.0);
  CHECK(r->upload_bytes_per_token == 0);
  CHECK(r->storage_bytes_per_token == 0);
  CHECK(r->tokens_per_s > 0);

  // Dynamic experts with one slot: every change of expert in a layer is an upload.
  for (auto& layer : plan.placement.tiers) std::fill(layer.begin(), layer.end(), ExpertTier::gpu_dynamic);
  plan.placement.n_dynamic_slots = 1;
  auto d = simulate(tp.trace, plan, hw);
  REQUIRE(d.ok());
  CHECK(d->gpu_dynamic.uses == 100u * 2 * 2);
  CHECK(d->gpu_dynamic.hits < d->gpu_dynamic.uses);
  CHECK(d->upload_bytes_per_token > 0);
  CHECK(d->token_us > r->token_us);
}

TEST_CASE("simulate: the plan's own profile predicts what the replay measures", "[planner][simulate]") {
  const ModelShape shape = tiny_shape(4, 16, 4);
  const auto tp = make_trace(shape, 21, 400);
  const HardwareProfile hw = test_machine(false);
  const uint64_t B = 3ull * shape.n_ff_exp * dtype_row_size(DType::q4_0, shape.n_embd);
  auto cm = CostModel::create(shape, tp.profile, hw, CostOptions{});
  REQUIRE(cm.ok());
  uint64_t fixed_g = 0, fixed_r = 0;
  cm->fixed_memory(Device::cpu, Device::cpu, fixed_g, fixed_r);
  // RAM for 40 of the 64 experts: the rest stream from storage through the RAM cache.
  const Plan plan = plan_for(shape, tp.profile, hw, Budget{6 * B, fixed_r + 40 * B, Objective::decode});
  REQUIRE(plan.predicted.storage_bytes_per_token > 0);
  auto r = simulate(tp.trace, plan, hw, SimulateOptions{50, 0});
  REQUIRE(r.ok());
  std::printf("predicted %.1f tokens/s (ram cache hit rate %.3f), replayed %.1f tokens/s (%.3f)\n",
              plan.predicted.tokens_per_s, plan.predicted.ram_cache_hit_rate, r->tokens_per_s, r->storage.hit_rate());
  INFO(plan_summary(plan, false) << simulation_summary(*r));
  // Same routing, so steady-state behaviour agrees within the LRU approximation.
  CHECK(r->tokens_per_s == Approx(plan.predicted.tokens_per_s).epsilon(0.10));
}

TEST_CASE("simulate: trace files round trip and malformed ones are rejected", "[planner][simulate]") {
  const auto tp = make_trace(tiny_shape(2, 4, 2), 1, 5);
  const std::string text = routing_trace_to_json(tp.trace);
  auto back = routing_trace_from_json(text, "trace.json");
  REQUIRE(back.ok());
  CHECK(back->tokens == tp.trace.tokens);
  CHECK(back->model_hash == "hash-x");
  using J = nlohmann::json;
  auto edit = [&](auto fn) {
    J j = J::parse(text);
    fn(j);
    return j.dump();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[", "trace.json: not valid JSON"},
      {edit([](J& j) { j["schema_version"] = 0; }), "schema_version 0 is not supported"},
      {edit([](J& j) { j["tokens"][3][1][0] = 4; }), "tokens[3][1][0] must be in [0, 3], is 4"},
      {edit([](J& j) { j["tokens"][2][0][1] = j["tokens"][2][0][0]; }), "tokens[2][0][1] repeats expert"},
      {edit([](J& j) { j["tokens"][1].erase(0); }), "tokens[1] must have 2 elements, has 1"},
      {edit([](J& j) { j["tokens"][0][0] = 3; }), "tokens[0][0] must be an array"},
      {edit([](J& j) { j.erase("n_expert"); }), "n_expert is missing"},
      {edit([](J& j) { j["extra"] = 1; }), "extra is not a known field"},
  };
  for (const auto& [bad, fragment] : cases) {
    INFO(fragment);
    auto r = routing_trace_from_json(bad, "trace.json");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains(fragment));
  }
  // Shape and model mismatches against a plan.
  const ModelShape other = tiny_shape(2, 5, 2);
  const auto tp5 = make_trace(other, 1, 5);
  const Plan plan = plan_for(other, tp5.profile, test_machine(false), Budget{1ull << 30, 1ull << 30, Objective::decode});
  auto mismatch = simulate(tp.trace, plan, test_machine(false));
  REQUIRE_FALSE(mismatch.ok());
  CHECK_THAT(mismatch.status().message(), Catch::Contains("differs from the plan's"));
  RoutingTrace wrong_model = tp5.trace;
  wrong_model.model_hash = "other";
  auto wrong = simulate(wrong_model, plan, test_machine(false));
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.status().message(), Catch::Contains("trace is of model other"));
}
