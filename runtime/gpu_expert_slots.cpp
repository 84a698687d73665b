#include "runtime/gpu_expert_slots.h"

#include <cassert>

namespace tandem {

Result<std::unique_ptr<GpuExpertSlots>> GpuExpertSlots::create(
    uint32_t n_layer, uint32_t n_expert, std::vector<uint32_t> n_slots, CachePolicyKind policy,
    const FrequencyPolicyOptions& frequency) {
  if (n_slots.size() != n_layer) {
    return make_error(ErrorCode::invalid_argument,
                      "GPU expert slots: {} per-layer slot counts for {} layers", n_slots.size(),
                      n_layer);
  }
  std::unique_ptr<GpuExpertSlots> s(new GpuExpertSlots());
  s->n_layer_ = n_layer;
  s->n_expert_ = n_expert;
  s->n_slots_ = std::move(n_slots);
  s->first_.resize(n_layer);
  uint32_t total = 0;
  for (uint32_t l = 0; l < n_layer; ++l) {
    s->first_[l] = total;
    total += s->n_slots_[l];
  }
  s->held_.assign(total, -1);
  s->batch_.assign(total, 0);
  s->batch_of_layer_.assign(n_layer, 0);
  s->slot_of_.assign(size_t{n_layer} * n_expert, -1);
  if (policy == CachePolicyKind::lru) {
    s->policy_ = make_lru_policy(n_layer, n_expert);
  } else {
    TANDEM_ASSIGN_OR_RETURN(s->policy_, make_frequency_policy(n_layer, n_expert, total, frequency));
  }
  return s;
}

void GpuExpertSlots::begin_batch(uint32_t layer) {
  assert(layer < n_layer_);
  // Batch numbers grow globally, so a slot's stale mark never equals a later batch's number.
  batch_of_layer_[layer] = ++batches_;
}

void GpuExpertSlots::protect(uint32_t layer, int32_t expert) {
  assert(layer < n_layer_ && expert >= 0 && uint32_t(expert) < n_expert_);
  if (const int32_t s = slot_of_[key(layer, expert)]; s >= 0)
    batch_[first_[layer] + uint32_t(s)] = batch_of_layer_[layer];
}

GpuSlotLookup GpuExpertSlots::use(uint32_t layer, int32_t expert) {
  assert(layer < n_layer_ && expert >= 0 && uint32_t(expert) < n_expert_);
  const ExpertId id{int32_t(layer), expert};
  policy_->on_access(id, ++tick_);
  const uint64_t batch = batch_of_layer_[layer];
  const uint32_t base = first_[layer];
  GpuSlotLookup r;
  if (const int32_t s = slot_of_[key(layer, expert)]; s >= 0) {
    batch_[base + uint32_t(s)] = batch;
    ++stats_.hits;
    r.slot = s;
    r.hit = true;
    return r;
  }
  ++stats_.misses;
  // An empty slot first (no eviction); else the policy's choice among the slots this batch has
  // not used: the batch's own experts must stay where its pair ids point.
  int32_t chosen = -1;
  candidates_.clear();
  candidate_slot_.clear();
  for (uint32_t s = 0; s < n_slots_[layer]; ++s) {
    if (held_[base + s] < 0) {
      chosen = int32_t(s);
      break;
    }
    if (batch_[base + s] == batch) continue;
    candidates_.push_back(ExpertId{int32_t(layer), held_[base + s]});
    candidate_slot_.push_back(s);
  }
  if (chosen < 0 && !candidates_.empty()) {
    const size_t v = policy_->choose_victim(candidates_, tick_);
    chosen = int32_t(candidate_slot_[v]);
    slot_of_[key(layer, held_[base + uint32_t(chosen)])] = -1;
    policy_->on_evict(candidates_[v]);
    ++stats_.evictions;
  }
  if (chosen < 0) {
    ++stats_.spills;
    return r;
  }
  held_[base + uint32_t(chosen)] = expert;
  batch_[base + uint32_t(chosen)] = batch;
  slot_of_[key(layer, expert)] = chosen;
  ++stats_.uploads;
  r.slot = chosen;
  r.upload = true;
  return r;
}

void GpuExpertSlots::drop(uint32_t layer, int32_t expert) {
  assert(layer < n_layer_ && expert >= 0 && uint32_t(expert) < n_expert_);
  const int32_t s = slot_of_[key(layer, expert)];
  if (s < 0) return;
  held_[first_[layer] + uint32_t(s)] = -1;
  slot_of_[key(layer, expert)] = -1;
  policy_->on_evict(ExpertId{int32_t(layer), expert});
}

int32_t GpuExpertSlots::slot_of(uint32_t layer, int32_t expert) const {
  return slot_of_[key(layer, expert)];
}

int32_t GpuExpertSlots::expert_in(uint32_t layer, uint32_t slot) const {
  return held_[first_[layer] + slot];
}

uint32_t GpuExpertSlots::total_slots() const {
  return static_cast<uint32_t>(held_.size());
}

uint32_t GpuExpertSlots::resident_count() const {
  uint32_t n = 0;
  for (int32_t e : held_) n += e >= 0 ? 1 : 0;
  return n;
}

}  // namespace tandem
