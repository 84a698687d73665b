#include "planner/plan.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "planner/planner.h"
#include "planner/test_fixtures.h"

using namespace tandem;
using namespace tandem::planner_test;
using J = nlohmann::json;

namespace {

Plan sample_plan() {
  const ModelShape shape = tiny_shape(3, 6, 2);
  const Profile profile = random_profile(shape, 17, 80);
  const uint64_t B = 3ull * shape.n_ff_exp * dtype_row_size(DType::q4_0, shape.n_embd);
  auto p = make_plan(shape, profile, test_machine(false), Budget{4 * B, 8 * B + (16ull << 20), Objective::decode},
                     PlanOptions{});
  REQUIRE(p.ok());
  return std::move(p).value();
}

}  // namespace

TEST_CASE("plan: JSON round trip is exact", "[planner][plan]") {
  const Plan p = sample_plan();
  const std::string text = plan_to_json(p);
  auto back = plan_from_json(text, "plan.json");
  REQUIRE(back.ok());
  CHECK(plan_to_json(*back) == text);
  CHECK(back->placement.tiers == p.placement.tiers);
  CHECK(back->expert_reasons == p.expert_reasons);
  CHECK(back->predicted.token_us == p.predicted.token_us);
  CHECK(back->predicted.memory.ram_bytes == p.predicted.memory.ram_bytes);
  CHECK(back->predicted.layers.size() == p.predicted.layers.size());
  CHECK(back->placement.n_dynamic_slots == p.placement.n_dynamic_slots);
  CHECK_THAT(plan_summary(*back, true), Catch::Contains("expert   5:"));
}

TEST_CASE("plan: malformed plan files are rejected naming the JSON path", "[planner][plan]") {
  const std::string good = plan_to_json(sample_plan());
  auto edit = [&](auto fn) {
    J j = J::parse(good);
    fn(j);
    return j.dump();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"a\":", "plan.json: not valid JSON"},
      {edit([](J& j) { j["schema_version"] = 3; }), "schema_version 3 is not supported"},
      {edit([](J& j) { j["objective"] = "train"; }), "objective must be \"decode\" or \"prefill\""},
      {edit([](J& j) { j["attention"] = "npu"; }), "attention must be \"cpu\" or \"gpu\""},
      {edit([](J& j) { j["n_dynamic_slots"] = 99; }), "n_dynamic_slots must be in [0, 6], is 99"},
      {edit([](J& j) { j["layers"].erase(0); }), "layers must have 3 elements, has 2"},
      {edit([](J& j) { j["layers"][1]["experts"][2]["tier"] = "ssd"; }),
       "layers[1].experts[2].tier must be \"gpu\", \"ram_cpu\" or \"storage\""},
      {edit([](J& j) { j["layers"][0]["experts"][0]["tier"] = "storage"; j["layers"][0]["experts"][0]["pinned"] = true; }),
       "layers[0].experts[0].pinned must be false for tier storage"},
      {edit([](J& j) { j["layers"][2]["experts"][1].erase("pinned"); }), "layers[2].experts[1].pinned is missing"},
      {edit([](J& j) { j["predicted"]["layers"][1]["upload_us"] = -1; }), "predicted.layers[1].upload_us must be in"},
      {edit([](J& j) { j["predicted"]["dynamic_hit_rate"] = 2; }), "predicted.dynamic_hit_rate must be in [0, 1]"},
      {edit([](J& j) { j["memory"]["gpu_bytes"] = 1.5; }), "memory.gpu_bytes must be a non-negative integer"},
      {edit([](J& j) { j["reasons"] = "none"; }), "reasons must be an array"},
  };
  for (const auto& [text, fragment] : cases) {
    INFO(fragment);
    auto r = plan_from_json(text, "plan.json");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains(fragment));
  }
}
