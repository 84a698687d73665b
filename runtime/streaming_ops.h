// StreamingOps: a ForwardOps decorator (forward_ops.h) whose moe() takes each routed expert's
// weights from an ExpertStore (expert_store.h) — in place from the mapping for ram/gpu tiers,
// from an ExpertCache slot for streamed ones — instead of the model's 3-D expert tensors.
// Every other op goes to the base ops unchanged.
//
// moe(), per ubatch: rows are grouped by expert; each expert used is acquired (blocking on
// its read when it is still in flight; a failed or short read fails the op with the cache's
// io_error naming layer, expert, tensor and offset — nothing is computed with missing
// weights), and the base ops' moe() runs on that expert alone: MoeArgs with n_expert = 1,
// n_expert_used = 1, weight 1.0 and the expert's rows, giving its exact output per row
// (1.0f * y == y). The outputs are then summed per row in slot order, as MoeArgs requires
// (spec §2.5), so the result does not depend on where the weights came from: an all-ram
// store and a streamed one give bit-identical results, and with a base whose per-expert
// output does not depend on the other rows of the ubatch (the plain ops), equal to the
// base's own moe() on the model tensors. Experts already in RAM are computed first, so a
// read still in flight overlaps their work.
//
// Trace (optional, trace.h), per layer pass: "router" (cat "layer": the router's mul_mat to
// mark_routed), "attention" (cat "layer": mark_attention_start to moe() entry: the norm,
// projections, RoPE, attention and output projection — the work a prefetch overlaps),
// "experts" (cat "cpu": the whole moe), per expert "expert" (cat "cpu") and "wait" (cat
// "wait": the op blocked on a read). Args: layer, pass (ubatch number), expert.
//
// Threading: as the base ops (one forward pass at a time).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "runtime/expert_store.h"
#include "runtime/forward_ops.h"
#include "runtime/trace.h"

namespace tandem {

struct StreamingOpsStats {
  uint64_t experts = 0;            // expert computations (one per expert per ubatch-layer)
  uint64_t streamed_experts = 0;   // of which from the ExpertCache
  uint64_t waits = 0;              // of which had to wait for (or start) a read
  uint64_t wait_us = 0;            // time blocked in those waits
  uint64_t expert_slab_bytes = 0;  // gate+up+down slab bytes of the experts computed
};

class StreamingOps final : public ForwardOps {
 public:
  // `store` (and `trace`, when given) must outlive the ops.
  StreamingOps(std::unique_ptr<ForwardOps> base, const ExpertStore& store, Trace* trace);

  std::string_view name() const override { return "streaming"; }
  Status mul_mat(const TensorView& w, const float* x, int64_t m, float* y) override;
  Status get_rows(const TensorView& w, const int32_t* ids, int64_t m, float* y) override {
    return base_->get_rows(w, ids, m, y);
  }
  void rms_norm(const float* x, const float* weight, int64_t m, int64_t n, float eps,
                float* y) override {
    base_->rms_norm(x, weight, m, n, eps, y);
  }
  void rope_neox(float* x, const int32_t* pos, int64_t m, int64_t n_head, int64_t head_dim,
                 int64_t n_rot, float base) override {
    base_->rope_neox(x, pos, m, n_head, head_dim, n_rot, base);
  }
  void attention(const float* q, const int32_t* pos, int64_t m, int64_t n_head,
                 const KvLayerView& kv, float scale, float* out) override {
    base_->attention(q, pos, m, n_head, kv, scale, out);
  }
  Status moe(const MoeArgs& args, float* out, std::span<uint64_t> gate_active) override;

  // Base counters; when the base does not count expert bytes, the slab bytes of the experts
  // computed stand in for them.
  ForwardOpsCounters counters() const override;
  void reset_counters() override;

  // Trace marks from the executor's observer (on the eval thread): the router of `layer`
  // finished; attention of `layer` starts (after the prefetch was issued).
  void mark_routed(uint32_t layer, uint64_t pass);
  void mark_attention_start(uint32_t layer);

  StreamingOpsStats stats() const { return stats_; }
  ForwardOps& base() { return *base_; }

 private:
  std::unique_ptr<ForwardOps> base_;
  const ExpertStore& store_;
  Trace* trace_;
  StreamingOpsStats stats_;
  uint64_t pass_ = 0;
  int64_t router_start_us_ = -1, attention_start_us_ = -1;
  // Scratch, grown on demand.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> by_expert_;
  std::vector<float> y_, xe_, ye_, ones_;
  std::vector<int32_t> zeros_;
};

// Layer number from a tensor name "blk.<N>.…" (-1 when it has none).
int32_t layer_of_tensor(std::string_view name);

}  // namespace tandem
