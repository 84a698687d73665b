// GpuExpertSlots: the bookkeeping of the GPU tier's dynamic expert slots (issue 7 item 2: "the
// expert cache: RAM tier (for streamed experts) and GPU tier (dynamic slots), each seeded from
// the plan's pinned hot set and managed by a policy for the rest"). It decides which slot a
// routed `gpu (dynamic)` expert (planner/plan.h) occupies and which resident expert leaves; the
// hybrid executor (hybrid_executor.h) does the copies. No Vulkan here: plain data, so the
// decisions are tested without a device.
//
// Model: every layer l has n_slots[l] slots of one expert each (its gate, up and down slabs),
// separate from the layer's pinned experts (which are never evicted and never pass through
// here). A layer's slots are used in batches, one batch per ubatch pass of the layer:
//   begin_batch(l)   forgets which of l's slots the previous batch used;
//   protect(l, e)    (optional, before the batch's use() calls) e's slot, when e is resident,
//                    counts as used by the batch: an earlier miss of the batch cannot evict an
//                    expert a later pair needs (the executor protects every routed expert
//                    first). Not an access: no counter, no policy update;
//   use(l, e)        one routed (row, slot) pair of dynamic expert e: hit when e is resident
//                    (its slot is now protected for the batch), else a miss that takes a slot
//                    for e — an empty one first, else the policy's victim among the layer's
//                    slots NOT used by this batch (the batch's earlier pairs are already
//                    recorded against theirs) — and says the slot must be uploaded before the
//                    batch's experts run; when every slot of the layer is used by the batch the
//                    miss gets no slot (slot -1: the caller computes the pair elsewhere, the
//                    hybrid executor on the CPU from the mapping).
//   drop(l, e)       e's slot holds nothing valid any more (its upload failed).
// Every use() counts as one access of the policy (cache_policy.h: lru or frequency, with one
// logical clock over all layers), as the RAM cache counts its accesses.
//
// Counters (stats()): hits, misses (= uploads + spills), uploads (slot assignments), evictions
// (uploads that replaced a resident expert), spills (misses without a slot).
//
// Errors: create() -> invalid_argument for a shape mismatch or the policy's own errors; use()
// and drop() take ids the caller checked (asserted).
// Threading: one thread (the executor's eval thread).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "runtime/cache_policy.h"
#include "runtime/expert_cache.h"

namespace tandem {

struct GpuSlotStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t uploads = 0;
  uint64_t evictions = 0;
  uint64_t spills = 0;
};

struct GpuSlotLookup {
  int32_t slot = -1;    // the expert's slot in its layer, [0, n_slots(l)), or -1 (spill)
  bool hit = false;     // resident before this use
  bool upload = false;  // the slot was just assigned: copy the expert into it before use
};

class GpuExpertSlots {
 public:
  // n_slots: per layer (n_layer entries). Errors: invalid_argument when n_slots.size() !=
  // n_layer; the frequency policy's (over n_layer x n_expert keys, its half-life from the total
  // number of slots).
  static Result<std::unique_ptr<GpuExpertSlots>> create(
      uint32_t n_layer, uint32_t n_expert, std::vector<uint32_t> n_slots, CachePolicyKind policy,
      const FrequencyPolicyOptions& frequency = {});

  void begin_batch(uint32_t layer);
  void protect(uint32_t layer, int32_t expert);
  GpuSlotLookup use(uint32_t layer, int32_t expert);
  void drop(uint32_t layer, int32_t expert);

  // The expert's slot, or -1 when it is not resident.
  int32_t slot_of(uint32_t layer, int32_t expert) const;
  // The expert a slot holds, or -1 when empty.
  int32_t expert_in(uint32_t layer, uint32_t slot) const;
  uint32_t n_slots(uint32_t layer) const { return n_slots_[layer]; }
  uint32_t total_slots() const;
  uint32_t resident_count() const;  // over all layers
  GpuSlotStats stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  std::string_view policy_name() const { return policy_->name(); }

 private:
  GpuExpertSlots() = default;
  size_t key(uint32_t layer, int32_t expert) const {
    return size_t(layer) * n_expert_ + size_t(expert);
  }

  uint32_t n_layer_ = 0, n_expert_ = 0;
  std::vector<uint32_t> n_slots_;         // [layer]
  std::vector<uint32_t> first_;           // [layer]: index of its slot 0 in the flat arrays below
  std::vector<int32_t> held_;             // [first_[l] + slot]: expert id or -1
  std::vector<uint64_t> batch_;           // [first_[l] + slot]: batch number that last used it
  std::vector<uint64_t> batch_of_layer_;  // [layer]: the current batch number (from 1)
  std::vector<int32_t> slot_of_;          // [layer * n_expert + expert]: slot or -1
  std::unique_ptr<CachePolicy> policy_;
  uint64_t tick_ = 0, batches_ = 0;
  GpuSlotStats stats_;
  std::vector<ExpertId> candidates_;  // scratch
  std::vector<uint32_t> candidate_slot_;
};

}  // namespace tandem
