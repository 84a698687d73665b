#include "runtime/expert_store.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

TEST_CASE("expert store: tiers from policies and plans; streamed views equal the mapping's bytes",
          "[stream]") {
  test::TempDir dir("tandem-store");
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  const Model& m = *model;
  const ModelShape& s = m.shape();

  const ExpertStoreConfig ram = make_store_config_all_ram(s);
  CHECK(ram.count(StoreTier::ram) == s.n_layer * s.n_expert);
  CHECK_FALSE(make_store_config_all_stream(s, 0).ok());

  Plan plan;
  plan.n_layer = s.n_layer;
  plan.n_expert = s.n_expert;
  plan.placement.tiers.assign(s.n_layer, std::vector<ExpertTier>(s.n_expert, ExpertTier::storage));
  plan.placement.tiers[0][1] = ExpertTier::gpu_dynamic;
  plan.placement.tiers[2][3] = ExpertTier::ram_cpu;
  CHECK_FALSE(make_store_config_from_plan(s, plan).ok());  // storage with no cache slots
  plan.placement.ram_cache_experts = 2;
  auto pc = make_store_config_from_plan(s, plan);
  REQUIRE(pc.ok());
  CHECK(pc->tier({0, 1}) == StoreTier::gpu);
  CHECK(pc->tier({2, 3}) == StoreTier::ram);
  CHECK(pc->tier({1, 1}) == StoreTier::stream);
  CHECK(pc->n_slots_per_layer == 2);
  REQUIRE(pc->notes.size() == 1);
  CHECK_THAT(pc->notes[0], Catch::Contains("GPU"));
  Plan wrong = plan;
  wrong.n_expert += 1;
  CHECK_FALSE(make_store_config_from_plan(s, wrong).ok());

  auto store = ExpertStore::create(m, *pc, {});
  INFO(store.status().message());
  REQUIRE(store.ok());
  REQUIRE((*store)->cache() != nullptr);
  for (const ExpertId id : {ExpertId{1, 5}, ExpertId{0, 1}, ExpertId{2, 3}}) {
    auto w = (*store)->acquire(id);
    REQUIRE(w.ok());
    CHECK(w->streamed == (pc->tier(id) == StoreTier::stream));
    const LayerWeights& lw = m.weights().layers[size_t(id.layer)];
    const TensorView* exps[3] = {&lw.ffn_gate_exps, &lw.ffn_up_exps, &lw.ffn_down_exps};
    const TensorView* got[3] = {&w->gate, &w->up, &w->down};
    for (int k = 0; k < 3; ++k) {
      const TensorView want = exps[k]->slice2(id.expert);
      CHECK(got[k]->ne == want.ne);
      CHECK(got[k]->dtype == want.dtype);
      CHECK(got[k]->nbytes() == want.nbytes());
      CHECK(std::memcmp(got[k]->data, want.data, want.nbytes()) == 0);
    }
  }

  // Memory-limit arithmetic: exactly one layer's routed experts fit, one byte less does not.
  const uint64_t weights = non_expert_weight_bytes(m.file());
  const uint64_t slot = *expert_slot_bytes(m.file());
  MemLimitInputs in{weights + 1000 + 10 + s.n_expert_used * slot, 1000, 10};
  auto lc = make_store_config_for_mem_limit(m, in);
  REQUIRE(lc.ok());
  CHECK(lc->n_slots == s.n_expert_used);
  CHECK(lc->count(StoreTier::stream) == s.n_layer * s.n_expert);
  in.mem_limit -= 1;
  auto small = make_store_config_for_mem_limit(m, in);
  REQUIRE_FALSE(small.ok());
  CHECK(small.status().code() == ErrorCode::out_of_memory);
  CHECK_THAT(small.status().message(), Catch::Contains(format_mib(weights)));
  // Never more slots than experts.
  in.mem_limit = 1ull << 40;
  CHECK(make_store_config_for_mem_limit(m, in)->n_slots == s.n_layer * s.n_expert);
}
