// GpuExpertSlots (the hybrid executor's dynamic GPU slots) without a device: hits, misses,
// victims outside the current batch, spills, and the policy choice (lru vs frequency).
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

#include "runtime/gpu_expert_slots.h"

namespace tandem {
namespace {

std::unique_ptr<GpuExpertSlots> make_slots(std::vector<uint32_t> n_slots, uint32_t n_expert,
                                           CachePolicyKind kind = CachePolicyKind::lru,
                                           const FrequencyPolicyOptions& f = {}) {
  const auto n_layer = static_cast<uint32_t>(n_slots.size());
  auto s = GpuExpertSlots::create(n_layer, n_expert, std::move(n_slots), kind, f);
  INFO(s.status().message());
  REQUIRE(s.ok());
  return std::move(s).value();
}

}  // namespace

TEST_CASE(
    "gpu expert slots: a miss fills an empty slot, then evicts the least recent outside the batch",
    "[gpu_slots][hybrid]") {
  auto s = make_slots({2}, 8);
  s->begin_batch(0);
  GpuSlotLookup a = s->use(0, 3);
  CHECK((a.slot == 0 && a.upload && !a.hit));
  GpuSlotLookup b = s->use(0, 5);
  CHECK((b.slot == 1 && b.upload && !b.hit));
  GpuSlotLookup c = s->use(0, 3);  // the same expert again in the same batch
  CHECK((c.slot == 0 && c.hit && !c.upload));
  GpuSlotLookup d = s->use(0, 6);  // both slots belong to this batch: no slot
  CHECK((d.slot == -1 && !d.hit && !d.upload));
  CHECK(s->slot_of(0, 6) == -1);

  s->begin_batch(0);
  GpuSlotLookup e = s->use(0, 5);  // hit, refreshes 5: 3 is now the least recent
  CHECK((e.slot == 1 && e.hit));
  GpuSlotLookup f = s->use(0, 7);
  CHECK((f.slot == 0 && f.upload));  // 3 evicted, 5 protected by the batch anyway
  CHECK(s->slot_of(0, 3) == -1);
  CHECK(s->slot_of(0, 7) == 0);
  CHECK(s->expert_in(0, 0) == 7);
  CHECK(s->resident_count() == 2);

  const GpuSlotStats st = s->stats();
  CHECK(st.hits == 2);
  CHECK(st.misses == 4);
  CHECK(st.uploads == 3);
  CHECK(st.evictions == 1);
  CHECK(st.spills == 1);

  s->drop(0, 7);  // a failed upload leaves the slot empty
  CHECK(s->slot_of(0, 7) == -1);
  CHECK(s->expert_in(0, 0) == -1);
  s->begin_batch(0);
  CHECK(s->use(0, 2).slot == 0);  // the empty slot, no eviction
  CHECK(s->stats().evictions == 1);
}

TEST_CASE("gpu expert slots: protect keeps a resident expert the batch needs later",
          "[gpu_slots][hybrid]") {
  for (bool protect : {false, true}) {
    auto s = make_slots({1}, 8);
    s->begin_batch(0);
    CHECK(s->use(0, 4).upload);
    // The next batch routes to 2 (absent) then 4 (resident).
    s->begin_batch(0);
    if (protect) {
      s->protect(0, 2);  // absent: nothing to protect
      s->protect(0, 4);
    }
    const GpuSlotLookup a = s->use(0, 2);
    const GpuSlotLookup b = s->use(0, 4);
    if (protect) {
      CHECK(a.slot == -1);  // 2 runs elsewhere, 4 stays
      CHECK((b.hit && b.slot == 0));
    } else {
      CHECK((a.upload && a.slot == 0));  // 2 evicts 4, then 4 finds no slot
      CHECK(b.slot == -1);
    }
    CHECK(s->stats().hits + s->stats().misses == 3);  // protect is not an access
  }
}

TEST_CASE("gpu expert slots: layers keep their own slots; zero slots spill every miss",
          "[gpu_slots][hybrid]") {
  auto s = make_slots({1, 0, 3}, 4);
  CHECK(s->total_slots() == 4);
  s->begin_batch(1);
  CHECK(s->use(1, 0).slot == -1);
  s->begin_batch(0);
  CHECK(s->use(0, 2).slot == 0);
  s->begin_batch(2);
  for (int32_t e = 0; e < 3; ++e) CHECK(s->use(2, e).slot == e);
  CHECK(s->slot_of(0, 2) == 0);  // untouched by layer 2's uploads
  CHECK(s->stats().spills == 1);
  CHECK(s->resident_count() == 4);
  CHECK_FALSE(GpuExpertSlots::create(2, 4, {1}, CachePolicyKind::lru).ok());
}

// Random batches against the invariants that make the executor correct: a use returns the slot
// that now holds the expert; within a batch no slot of an expert already used changes hands; a
// spill happens only when every slot of the layer is taken by the batch; counts add up.
TEST_CASE("gpu expert slots: random batches keep the batch's slots and count every use",
          "[gpu_slots][hybrid]") {
  for (CachePolicyKind kind : {CachePolicyKind::lru, CachePolicyKind::frequency}) {
    for (uint32_t n_slots : {1u, 2u, 3u, 7u}) {
      constexpr uint32_t n_layer = 3, n_expert = 9;
      auto s = make_slots(std::vector<uint32_t>(n_layer, n_slots), n_expert, kind);
      std::mt19937 rng(n_slots * 7 + static_cast<uint32_t>(kind));
      uint64_t uses = 0;
      for (int b = 0; b < 300; ++b) {
        const uint32_t l = rng() % n_layer;
        s->begin_batch(l);
        std::map<int32_t, int32_t> batch;  // expert -> slot, for experts that got one
        const int n = 1 + int(rng() % 6);
        for (int i = 0; i < n; ++i) {
          const auto e = static_cast<int32_t>(rng() % n_expert);
          const GpuSlotLookup r = s->use(l, e);
          ++uses;
          if (r.slot < 0) {
            CHECK(batch.size() == n_slots);
            CHECK(batch.count(e) == 0);
          } else {
            CHECK(s->expert_in(l, uint32_t(r.slot)) == e);
            CHECK(r.hit != r.upload);
            if (batch.count(e) != 0) CHECK((r.hit && batch[e] == r.slot));
            batch[e] = r.slot;
          }
          for (const auto& [be, bs] : batch) CHECK(s->slot_of(l, be) == bs);
        }
        CHECK(s->resident_count() <= n_layer * n_slots);
      }
      const GpuSlotStats st = s->stats();
      CHECK(st.hits + st.misses == uses);
      CHECK(st.misses == st.uploads + st.spills);
      CHECK(st.evictions <= st.uploads);
    }
  }
}

// The workload where the policies differ: a hot expert used every third access, two cold ones
// (each seen once in a while) between its uses, two slots. LRU always evicts the hot expert
// before it returns; frequency, with the profile's prior on it, keeps it.
TEST_CASE("gpu expert slots: frequency keeps a hot expert that LRU evicts", "[gpu_slots][hybrid]") {
  constexpr uint32_t n_expert = 16;
  FrequencyPolicyOptions f;
  f.prior.assign(n_expert, 0.0);
  f.prior[0] = 1.0;  // the profile says expert 0 is hot
  auto lru = make_slots({2}, n_expert);
  auto freq = make_slots({2}, n_expert, CachePolicyKind::frequency, f);
  for (GpuExpertSlots* s : {lru.get(), freq.get()}) {
    int32_t cold = 1;
    for (int round = 0; round < 10; ++round) {
      s->begin_batch(0);
      s->use(0, 0);
      for (int i = 0; i < 2; ++i) {  // two cold experts between the hot one's uses
        s->begin_batch(0);
        s->use(0, cold);
        cold = cold % (n_expert - 1) + 1;
      }
    }
  }
  CHECK(lru->stats().misses ==
        30);  // every access misses: the hot expert is always the least recent
  CHECK(freq->stats().misses == 21);  // the hot expert misses once
  CHECK(freq->slot_of(0, 0) >= 0);
  CHECK(lru->policy_name() == "lru");
  CHECK(freq->policy_name() == "frequency");
}

}  // namespace tandem
