// HybridExecutor: `--placement hybrid` (issue 7 item 1) — attention, norms, the KV cache and the
// output head on a Vulkan device (the GPU graph of gpu_executor_state.h, recorded one layer at
// a time), the router on the CPU, and each layer's chosen experts split by tier: GPU-tier
// experts computed on the GPU from a compact per-layer copy, the others on the CPU at the same
// time (the fast sparse ops through StreamingOps: RAM-tier experts in place from the mapping,
// storage-tier ones through the ExpertCache, prefetched by the router).
//
// Per ubatch (rows as Forward: the last layer routes and computes only the rows that give
// logits):
//   embedding   get_rows(token_embd) on the CPU, into x (host-visible; see Memory).
//   per layer l:
//     1. CPU: router mul_mat(ffn_gate_inp) on the raw layer input x and top-k (route_row, as
//        Forward::route) -> ids, weights (n_rows, n_expert_used); the observer chain (the
//        Prefetcher first, which starts storage reads of chosen streamed experts, then the
//        user's observer) gets on_routing NOW, before the layer's attention is submitted.
//     2. The (row, slot) pairs are split: pairs whose expert is GPU-resident go to the GPU
//        (their row index and compact slot id written to two host-visible buffers).
//     3. One hand-off to the GPU: submission A = rms_norm(attn_norm), K/V projections, rope,
//        set_rows, Q, rope, flash_attn, attn_output, add -> x, rms_norm(ffn_norm) -> f;
//        submission B (queued at once, waiting on A's timeline value) = get_rows(f rows of the
//        GPU pairs), mul_mat_vec_id gate/up over the compact experts, reglu, mul_mat_vec_id
//        down (mul_mat_vec_t_id for the transposed layout) -> one output row per pair,
//        written to host-visible memory.
//     4. CPU: as soon as A is done, the CPU pairs' experts run (StreamingOps::moe, one row per
//        pair with weight 1, so each output is the expert's exact y) while B runs on the GPU;
//        then the host waits for B and joins: x[row] += Σ_slot w_slot · y_slot in slot order
//        (s = 0 assigns, later slots add: the CPU path's moe + add).
//   output head: rms_norm(output_norm) + mul_mat(output) on the GPU, logits read back.
// Synchronisations (ExecutorCounters::syncs, one per hand-off the host waits for): one per
// layer and one for the output head per ubatch: syncs <= ubatches * (n_layer + 1). Within a
// layer's round trip the host reads the GPU's timeline at two points when both sides have
// experts (f ready; the GPU experts done) — the second point is what lets the two sides'
// experts overlap; a layer whose chosen experts are all on one side needs one.
//
// Where experts live (first match wins):
//   options.plan   gpu_pinned and gpu_dynamic -> GPU (uploaded once at creation: dynamic GPU
//                  slots are NOT implemented, dynamic experts are simply pinned), ram_cpu ->
//                  CPU from the mapping, storage -> CPU through the ExpertCache with the plan's
//                  ram_cache_experts slots per layer. The plan's attention/output_head may say
//                  cpu: this executor runs them on the GPU anyway (logged).
//   mem_limit > 0  no expert on the GPU (on unified memory they would count against the
//                  limit), every expert streamed as StreamingExecutor does
//                  (make_store_config_for_mem_limit, KV counted 0: it is device memory).
//   otherwise      with no profile there is no evidence of which experts are hot, so the rule
//                  is by size: every expert goes on the GPU when all experts together take at
//                  most half of the device-local memory (DeviceCaps::device_local_bytes());
//                  else, in every layer, the lowest-numbered experts up to that half (an equal
//                  share per layer), the rest in RAM on the CPU. Pass a plan made from a
//                  profile (`tandem plan`) to put the hot ones there.
//
// Memory (memory_lines(): one line for the GPU, one for the CPU): the GPU graph's weights
// without the expert tensors (placed as gpu/weight_buffer.h), the compact GPU experts
// (MemoryIntent::device_weights: device-local, filled through the staging ring on a discrete
// device; host-visible memory filled in place on a unified one), the KV cache for all n_ctx
// positions (as GpuExecutor). x and f are MemoryIntent::shared: on unified memory both sides
// read and write the same pages, nothing is copied; on a discrete device the GPU reads them
// over the bus. The pair outputs are MemoryIntent::readback.
//
// Counters: gpu_hits = (row, slot) pairs computed on the GPU (gpu_misses 0: no dynamic slots);
// ram_hits/ram_misses = the prefetcher's (streamed experts found in RAM or not when routed);
// storage_bytes = slab bytes the cache read; upload_bytes = weights copied at creation
// (staged tensors + compact experts) + per ubatch the positions and pair ids written;
// weight_bytes/expert_bytes = the CPU ops' counts + what the GPU shaders read (dense weights as
// GpuExecutor counts them, expert slabs per GPU pair); gpu_memory_bytes = device allocations.
//
// Observers: on_routing as described (before attention is submitted); on_expert_gate_activity
// and on_expert_gate_neurons are NOT reported (the GPU does not count active neurons).
// Trace (options.trace): the CPU side's spans (StreamingOps, Prefetcher, storage reads) plus a
// "gpu_wait" span per host wait, written when the executor is destroyed.
//
// Errors: those of GpuExecutor::create (no device, out of device memory naming what did not
// fit, dtypes without shaders), invalid_argument for a plan made for another model; eval as
// Executor::eval, plus an expert read that failed (io_error from the cache, never a result
// computed without the weights).
// Not thread-safe: one eval at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "runtime/executor.h"
#include "runtime/expert_cache.h"
#include "runtime/forward_ops.h"
#include "runtime/model.h"

namespace tandem {

struct Plan;

struct HybridExecutorOptions {
  std::string device;  // --device, as GpuExecutorOptions::device
  uint32_t n_ctx = 4096;
  uint32_t n_ubatch = 512;
  int n_threads = 0;  // CPU threads (0 = all)
  DType cache_type = DType::f16;
  const Plan* plan = nullptr;  // nullptr: the rule above; must outlive create() only
  uint64_t mem_limit = 0;      // bytes; 0 = none
  std::filesystem::path trace;
  CachePolicyKind policy = CachePolicyKind::lru;  // --cache-policy, for streamed experts
  // The CPU experts' base ops (under StreamingOps); empty = make_fast_cpu_ops(cpu::kernels()).
  std::function<std::unique_ptr<ForwardOps>()> make_base_ops;
};

class HybridExecutor final : public Executor {
 public:
  // `model` must outlive the executor.
  static Result<std::unique_ptr<HybridExecutor>> create(const Model& model,
                                                        const HybridExecutorOptions& options);
  ~HybridExecutor() override;

  std::string_view placement() const override { return "hybrid"; }
  uint32_t n_ctx() const override;
  uint32_t n_past() const override;
  void clear() override;
  Status truncate(uint32_t n) override;
  Status eval(std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) override;
  void set_observer(ForwardObserver* observer) override;
  std::vector<DeviceMemoryLine> memory_lines() const override;
  ExecutorCounters counters() const override;
  void reset_counters() override;

  // Experts resident on the GPU, over all layers.
  uint32_t gpu_expert_count() const;
  uint64_t validation_message_count() const;
  std::string device_summary() const;
  // Test hook: called with the layer right before that layer's attention is submitted.
  void set_attention_submit_hook(std::function<void(uint32_t layer)> hook);

  struct Impl;

 private:
  explicit HybridExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The factory's call for --placement hybrid.
Result<std::unique_ptr<Executor>> make_hybrid_executor(const Model& model,
                                                       const HybridExecutorOptions& options);

}  // namespace tandem
