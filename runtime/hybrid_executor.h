// HybridExecutor: `--placement hybrid` (issue 7 item 1) — attention, norms, the KV cache and the
// output head on a Vulkan device (the GPU graph of gpu_executor_state.h, recorded one layer at
// a time), the router on the CPU, and each layer's chosen experts split by tier: GPU-tier
// experts computed on the GPU from a compact per-layer copy (pinned experts, plus dynamic slots
// filled on demand), the others on the CPU at the same time (the fast sparse ops through
// StreamingOps: RAM-tier experts in place from the mapping, storage-tier ones through the
// ExpertCache, prefetched by the router).
//
// Per ubatch (rows as Forward: the last layer routes and computes only the rows that give
// logits):
//   embedding   get_rows(token_embd) on the CPU, into x (host-visible; see Memory).
//   per layer l:
//     1. CPU: router mul_mat(ffn_gate_inp) on the raw layer input x and top-k (route_row, as
//        Forward::route) -> ids, weights (n_rows, n_expert_used); the observer chain (the
//        Prefetcher first, which starts storage reads of chosen streamed experts, then the
//        user's observer) gets on_routing NOW, before the layer's attention is submitted.
//     2. The (row, slot) pairs are split (rows in order, slots in order): a pinned expert's
//        pairs go to the GPU; a dynamic expert's (plan tier gpu (dynamic)) look up the layer's
//        GpuExpertSlots (gpu_expert_slots.h): resident -> GPU; absent -> it takes a slot (an
//        empty one, else the policy's victim among the slots of experts this ubatch does not
//        route to: the resident ones it routes to are protected first) and its upload is
//        issued (below), -> GPU; absent with every slot taken by this ubatch's experts (or
//        no slots) -> CPU, from the mapping. The GPU pairs' row index and
//        compact slot id (pinned i at i, dynamic slot j at n_pinned + j) go to two
//        host-visible buffers.
//        Uploads, issued here, i.e. before attention is submitted: on a discrete device the
//        expert's three slabs are copied from the mapping through the executor's own staging
//        ring (gpu/staging_ring.h; on the transfer queue where there is one), which signals
//        the ring's timeline; on unified memory the slot buffer is host-visible and a worker
//        thread memcpys the slabs from the mapping (faulting in pages not resident; with a
//        one-thread arena the eval thread itself copies, at the join in step 3).
//     3. One hand-off to the GPU: submission A = rms_norm(attn_norm), K/V projections, rope,
//        set_rows, Q, rope, flash_attn, attn_output, add -> x, rms_norm(ffn_norm) -> f;
//        submission B (queued at once) = get_rows(f rows of the GPU pairs), mul_mat_vec_id
//        gate/up over the compact experts, reglu, mul_mat_vec_id down (mul_mat_vec_t_id for
//        the transposed layout) -> one output row per pair, written to host-visible memory.
//        B waits on A's timeline value and, when this layer uploaded through the ring, on the
//        ring's last value: the copies run while attention runs and the GPU orders them before
//        B; the host never waits for them. On unified memory the eval thread joins the memcpy
//        worker (host work that ran while A ran on the GPU) before submitting B; the submission
//        makes the host writes visible to the device.
//     4. CPU: as soon as A is done, the CPU pairs' experts run (StreamingOps::moe, one row per
//        pair with weight 1, so each output is the expert's exact y) while B runs on the GPU;
//        then the host waits for B and joins: x[row] += Σ_slot w_slot · y_slot in slot order
//        (s = 0 assigns, later slots add: the CPU path's moe + add).
//   output head: rms_norm(output_norm) + mul_mat(output) on the GPU, logits read back.
// Synchronisations (ExecutorCounters::syncs, one per hand-off the host waits for): one per
// layer and one for the output head per ubatch: syncs <= ubatches * (n_layer + 1). Within a
// layer's round trip the host reads the GPU's timeline at two points when both sides have
// experts (f ready; the GPU experts done) — the second point is what lets the two sides'
// experts overlap; a layer whose chosen experts are all on one side needs one. Uploads add no
// host wait: a slot is overwritten only after the host has seen the previous B that read it
// complete (every layer's round trip ends with that wait), so write-after-read needs nothing
// more, and read-after-write is B's semaphore wait (or the submission after the memcpy). The
// ring is sized so that one layer's uploads never wait for a ring slot (capped at 256 MiB of
// staging; past the cap an upload may block on the ring's own oldest copy).
//
// Where experts live (first match wins):
//   options.plan   gpu_pinned -> GPU (uploaded once at creation); gpu_dynamic -> GPU through
//                  min(plan.n_dynamic_slots, the layer's dynamic experts) slots per layer,
//                  managed by options.policy (lru | frequency, the RAM cache's choice), pinned
//                  experts never evicted; ram_cpu -> CPU from the mapping; storage -> CPU
//                  through the ExpertCache with the plan's ram_cache_experts slots per layer.
//                  The plan's attention/output_head may say cpu: this executor runs them on
//                  the GPU anyway (logged).
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
// without the expert tensors (placed as gpu/weight_buffer.h), the compact GPU experts and
// dynamic slots (MemoryIntent::device_weights: device-local, filled through a staging ring on
// a discrete device; host-visible memory filled in place on a unified one), the KV cache for
// all n_ctx positions (as GpuExecutor). x and f are MemoryIntent::shared: on unified memory
// both sides read and write the same pages, nothing is copied; on a discrete device the GPU
// reads them over the bus. The pair outputs are MemoryIntent::readback. The dynamic upload
// ring (discrete only): 3 x n_dynamic_slots x the largest expert matrix of host memory.
//
// Counters: gpu_hits = GPU pairs whose expert was resident when looked up (pinned, or a
// dynamic slot hit; a ubatch's later pairs of an expert its first pair uploaded are hits);
// gpu_misses = dynamic lookups that found the expert absent (each either uploaded it or, with
// no slot free, ran on the CPU), so gpu_hits + gpu_misses = the pairs of GPU-tier experts;
// gpu_slot_stats() splits the misses into uploads and spills; ram_hits/ram_misses = the
// prefetcher's (streamed experts found in RAM or not when routed); storage_bytes = slab bytes
// the cache read; upload_bytes = weights copied at creation (staged tensors + pinned experts)
// + each dynamic upload's expert bytes (gate + up + down slabs) + per ubatch the positions and
// pair ids written; weight_bytes/expert_bytes = the CPU ops' counts + what the GPU shaders
// read (dense weights as GpuExecutor counts them, expert slabs per GPU pair);
// gpu_memory_bytes = device allocations.
//
// Observers: on_routing as described (before attention is submitted); on_expert_gate_activity
// and on_expert_gate_neurons are NOT reported (the GPU does not count active neurons).
// Trace (options.trace): the CPU side's spans (StreamingOps, Prefetcher, storage reads), a
// "gpu_wait" span per host wait and a "gpu_upload" span (cat "upload") per dynamic upload
// (args layer, expert, bytes, slot = compact index, pass; detail "staging ring" = the host's
// staging writes and queue submissions, or "memcpy" = the worker's copy), written when the
// executor is destroyed.
//
// Errors: those of GpuExecutor::create (no device, out of device memory naming what did not
// fit, dtypes without shaders), invalid_argument for a plan made for another model; eval as
// Executor::eval, plus an expert read that failed (io_error from the cache, never a result
// computed without the weights) and a failed upload (naming layer, expert, slot and tensor;
// the layer's slots it was filling are emptied).
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
#include "runtime/gpu_expert_slots.h"
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
  // --cache-policy: the RAM cache of streamed experts and the GPU's dynamic slots.
  CachePolicyKind policy = CachePolicyKind::lru;
  FrequencyPolicyOptions frequency;  // for CachePolicyKind::frequency (e.g. a profile's prior)
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

  // Experts resident on the GPU now (pinned + dynamic slots holding one), over all layers.
  uint32_t gpu_expert_count() const;
  // Dynamic slots over all layers, and their counters since reset_counters().
  uint32_t gpu_slot_count() const;
  GpuSlotStats gpu_slot_stats() const;
  uint64_t validation_message_count() const;
  std::string device_summary() const;
  // Test hook: called with the layer right before that layer's attention is submitted.
  void set_attention_submit_hook(std::function<void(uint32_t layer)> hook);
  // Test hook: called on the eval thread when a dynamic upload is issued (expert bytes).
  void set_upload_hook(std::function<void(uint32_t layer, int32_t expert, uint64_t bytes)> hook);

  struct Impl;

 private:
  explicit HybridExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The factory's call for --placement hybrid.
Result<std::unique_ptr<Executor>> make_hybrid_executor(const Model& model,
                                                       const HybridExecutorOptions& options);

}  // namespace tandem
