// GpuExecutor: the GPU placement (`--placement gpu`, issue 5 item 4) — every layer, the KV cache
// and the output head on one Vulkan device, following Forward's graph (forward.cpp, spec §2.1)
// op for op:
//   get_rows(token_embd) -> per layer: router mul_mat(ffn_gate_inp) on the RAW layer input and
//   top_k (spec §2.2) | rms_norm(attn_norm) | mul_mat(attn_k, attn_v) | rope_neox(k) on RoPE
//   layers | set_rows into the cache | mul_mat(attn_q) | rope_neox(q) | flash_attn (causal, the
//   sliding window on SWA layers) | mul_mat(attn_output) | add | rms_norm(ffn_norm) | expert
//   FFN (mul_mat_vec_id gate/up, reglu, mul_mat_vec_id down or mul_mat_vec_t_id for the
//   transposed layout, moe_sum) | add  -> rms_norm(output_norm) | mul_mat(output).
// As on the CPU, the last layer computes past the K/V projections only the rows that give
// logits, and only those rows are read back (LogitsRows::last: one row).
//
// Submissions: one command buffer per ubatch. A decode step (one token) is recorded once and
// replayed: its dispatches read the token id and position from two small host-visible buffers
// the host rewrites before each submit (set_rows, rope and flash_attn take positions from the
// device), so a token costs one vkQueueSubmit and one wait.
//
// Memory (memory_lines()): weights per tensor as gpu/weight_buffer.h places them — zero-copy
// import of the mapped GGUF pages on a unified device with VK_EXT_external_memory_host,
// else one host-visible copy (unified), else device-local through the staging ring (discrete,
// or TANDEM_VK_FORCE_DISCRETE=1); the tied output head shares token_embd's buffer. The KV cache
// is device memory holding the FULL n_ctx positions on every layer, sliding-window layers
// included (cell = position; the window is applied by flash_attn's mask): simpler than the CPU
// ring buffer, at the cost of (n_ctx - n_swa - n_ubatch) cells per SWA layer. Consequently
// truncate(n) never fails for n <= n_past (KvCache::truncate can, when a ring has overwritten
// what the window of position n needs); results after truncate equal a fresh evaluation.
// Scratch: activations for n_ubatch rows and the logits of n_ubatch rows.
//
// Observers: on_routing is supported by reading back every layer's expert ids and weights (one
// copy of n_rows * n_expert_used * 8 bytes per layer, recorded only while an observer is set);
// the calls come after the ubatch's submission completed (still in layer order), i.e. too late
// for prefetching. on_expert_gate_activity / on_expert_gate_neurons are NOT reported (the
// shaders do not count active neurons).
//
// Counters: weight_bytes = bytes the shaders read per ubatch (each dense weight once per
// ubatch, the routed experts' gate/up/down once per row and slot, embedding rows, the output
// head once); upload_bytes = staged weight bytes (at creation) + token ids and positions per
// ubatch; gpu_memory_bytes = device allocations held (imported file pages excluded).
//
// Shadow check (options.check, TANDEM_CHECK_GPU=1; runtime/gpu_check.h): every op is submitted
// on its own and waited for, its inputs and outputs are read back and recomputed with the plain
// CPU ops (make_cpu_ops), and eval fails with an error naming the first op whose NMSE exceeds
// its tolerance (its layer, tensor and the NMSE). Slow: for debugging only.
//
// Errors: not_found "no Vulkan device …" when none fits --device; out_of_memory naming what did
// not fit (a weight tensor, the KV cache, scratch); unsupported for a weight dtype without
// shaders (only f32, f16, q8_0, q4_0 have them) or shapes the shaders cannot take. eval: as
// Executor::eval.
// Not thread-safe: one eval at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "runtime/executor.h"
#include "runtime/gpu_check.h"
#include "runtime/model.h"

namespace tandem {

struct GpuGraph;  // gpu_executor_state.h

struct GpuExecutorOptions {
  // --device: "" = the best discrete GPU, else an integrated one; "cpu" = a software device
  // (lavapipe); "none"; a number = that index (gpu/device_select.h).
  std::string device;
  uint32_t n_ctx = 4096;  // already resolved (not 0)
  uint32_t n_ubatch = 512;
  DType cache_type = DType::f16;  // f16 or f32
  bool check = false;             // TANDEM_CHECK_GPU=1 (the factory reads the environment)
};

class GpuExecutor : public Executor {
 public:
  // `model` must outlive the executor. The Vulkan switches (validation, TANDEM_VK_FORCE_DISCRETE,
  // TANDEM_VK_DISABLE_HOST_IMPORT) are read from the environment here (gpu::GpuOptions::from_env).
  static Result<std::unique_ptr<GpuExecutor>> create(const Model& model,
                                                     const GpuExecutorOptions& options);
  ~GpuExecutor() override;

  std::string_view placement() const override { return "gpu"; }
  uint32_t n_ctx() const override;
  uint32_t n_past() const override;
  void clear() override;
  Status truncate(uint32_t n) override;
  Status eval(std::span<const int32_t> tokens, LogitsRows rows,
              std::vector<float>& logits) override;
  void set_observer(ForwardObserver* observer) override;
  std::vector<DeviceMemoryLine> memory_lines() const override;
  ExecutorCounters counters() const override;
  void reset_counters() override;

  // For tests and `tandem run`'s summary.
  std::string device_summary() const;
  // "imported", "host_visible" or "staged" (gpu/weight_buffer.h): how the weights got there.
  std::string weight_placement() const;
  uint64_t weight_bytes_bound() const;  // bytes of weights the device reads from
  uint64_t validation_message_count() const;
  // Decode submissions that replayed a recording (vs re-recorded), since creation.
  uint64_t replays() const;
  // Test hook for the shadow check: perturb the device output of `fault.op` (see gpu_check.h).
  void set_check_fault(const GpuCheckFault& fault);

 private:
  GpuExecutor();
  std::unique_ptr<GpuGraph> s_;
};

// The factory the Session calls for --placement gpu.
Result<std::unique_ptr<Executor>> make_gpu_executor(const Model& model,
                                                    const GpuExecutorOptions& options);

}  // namespace tandem
