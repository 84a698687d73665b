// CostModel: predicted time per token of a Placement on a HardwareProfile, for a model shape
// and usage Profile. Pure arithmetic; every planner decision is scored by it.
//
// Units: bytes; time in microseconds (us); bandwidth in GB/s = 1e9 B/s = 1e3 B/us, so
// "t = bytes / (gbps * 1e3)" is in us; compute in GFLOP/s = 1e3 FLOP/us.
//
// Sizes (spec §3.3, ggml ne order):
//   B   = expert_bytes = 3 * n_ff_exp * row_size(expert_dtype, n_embd)  (gate, up, down slabs)
//   attention weights per layer = row_size(dense, n_embd) * (n_embd_q + 2 n_embd_k_gqa)
//       + row_size(dense, n_embd_q) * n_embd + 4 * n_embd * n_expert (f32 router) + 8 n_embd (norms)
//   KV bytes read per layer and token = 2 (K and V) * ctx_l * n_embd_k_gqa * 2 (f16), with
//       ctx_l = min(context_length, n_swa) on sliding-window layers, else context_length
//   head bytes = n_vocab * row_size(head_dtype, n_embd)
//
// Per layer l, with p_e = activation probability (Profile), a_e = gate activity:
//   CPU expert time per use (spec §5.1: the gate is read for every neuron, up and down rows
//   only for active ones):   t_cpu(a) = gate_us + a * (dense_us - gate_us)
//       dense_us = isa.expert_ffn_dense_us, or B / cpu_bw;  gate_us = isa.expert_ffn_gate_us,
//       or dense_us / 3.  Bytes read per use: B * (1 + 2a) / 3.
//   GPU expert time per use: t_gpu = gpu.expert_ffn_us, or B / gpu_bw (dense; bytes B).
//   cpu_experts_us = sum over ram_cpu and storage experts of p_e * t_cpu(a_e)
//   gpu_experts_us = sum over gpu experts (pinned and dynamic) of p_e * t_gpu
//   attention_us   = cpu: isa.attention_us or attention bytes / cpu_bw; gpu likewise.
//   Misses (LRU curve h of the profile; A = sum_e p_e expected expert uses per token):
//     the resident experts and the slots together behave like one LRU of the layer holding
//     the hot experts, so  misses = min(uses of the tier, (h(n_expert) - h(resident + slots)) * A)
//     (h(n_expert) < 1 only by the cold misses of the profiled run: a start-up cost, left out)
//     dynamic: resident = gpu-pinned count, slots = min(n_dynamic_slots, n_dynamic) >= 1
//     storage: resident = count of experts not on storage, slots = min(ram_cache, n_storage) >= 1
//   upload_us  = dynamic_misses * B / upload_gbps
//   storage_us = storage_misses * B / storage_throughput(B) + min(1, storage_misses) * latency
//   Overlap (prefetch right after the pre-attention router, spec §5.3): transfers run during
//   attention, experts start when attention and their transfer are done:
//     compute_us = max( max(attention_us, storage_us) + cpu_experts_us,
//                       max(attention_us, upload_us) + gpu_experts_us )
//   sync_us = gpu.submit_wait_us when the layer has work on both CPU and GPU (one hand-off).
//   Shared bus (hw.shared_memory_bus): every byte read by CPU and GPU, uploaded (read and
//   written: 2x) and read from storage (written to RAM) crosses one bus:
//     bandwidth_us = bus_bytes / shared_bandwidth_gbps, else 0.
//   total_us = max(compute_us, bandwidth_us) + sync_us
//   This is why splitting can lose on a unified-memory machine: the GPU reads dense experts
//   (B per use, versus B(1+2a)/3 on the CPU), both sides share one bus, and each layer pays
//   a submit+wait.
// Per token: token_us = sum_l total_us + head_us + submit_us, where head_us = head bytes /
//   bandwidth of its device and submit_us = gpu.submit_wait_us once when anything runs on
//   the GPU. tokens_per_s = 1e6 / token_us.
//
// Prefill (objective prefill, batch N = prefill_batch tokens, time per token = batch time / N):
//   expert e is read once per batch with probability P_e = 1 - (1 - p_e)^N and computes
//   N p_e tokens: time = max(P_e * B / bw, N p_e * 6 n_embd n_ff_exp * s / gflops) with
//   s = (1 + 2a)/3 on the CPU, 1 on the GPU; attention = max(weights / bw,
//   N * 2 * attention params / gflops); misses use the same LRU estimate with P_e in place
//   of p_e. The KV-cache term is left out of prefill (it depends on the prompt's position).
//
// Memory (MemoryUse): token_embd always in RAM; attention weights and KV cache
//   (2 * context_length * n_embd_k_gqa * 2 bytes per layer, f16) on the attention device;
//   output head on its device (a GPU copy when tied and on GPU); gpu-pinned experts on GPU;
//   gpu-dynamic experts in RAM plus slots*B per layer on GPU; ram_cpu in RAM; storage
//   experts' RAM cache slots*B per layer in RAM. On a unified-memory GPU, ram_bytes includes
//   gpu_bytes.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "core/model_shape.h"
#include "core/status.h"
#include "planner/budget.h"
#include "planner/hardware_profile.h"
#include "planner/plan.h"
#include "planner/profile.h"

namespace tandem {

// One layer's time from its parts (us), the overlap rule above:
//   max(max(attention, storage) + cpu_experts, max(attention, upload) + gpu_experts, bandwidth) + sync
inline double combine_layer_us(double attention, double cpu_experts, double gpu_experts, double upload,
                               double storage, double sync, double bandwidth) {
  const double cpu_end = (attention > storage ? attention : storage) + cpu_experts;
  const double gpu_end = (attention > upload ? attention : upload) + gpu_experts;
  const double compute = cpu_end > gpu_end ? cpu_end : gpu_end;
  return (compute > bandwidth ? compute : bandwidth) + sync;
}

struct CostOptions {
  DType expert_dtype = DType::q4_0;
  DType dense_dtype = DType::q4_0;  // attention weights
  DType head_dtype = DType::q4_0;   // output.weight (or token_embd when tied)
  DType embd_dtype = DType::q4_0;   // token_embd
  uint32_t context_length = 4096;   // KV cache size and attention reads
  uint32_t prefill_batch = 256;
  Objective objective = Objective::decode;
  uint32_t gpu_index = 0;           // which HardwareProfile::gpus entry; ignored without GPUs
};

// Aggregates of one layer's placement: what layer time depends on. Sums are per token.
struct LayerLoad {
  double cpu_us = 0;          // sum p_e t_cpu(a_e) (or the prefill roofline)
  double cpu_bytes = 0;
  double gpu_us = 0;
  double gpu_bytes = 0;
  double dynamic_uses = 0;    // sum of p_e over gpu-dynamic experts
  double storage_uses = 0;
  uint32_t n_gpu_pinned = 0;
  uint32_t n_gpu_dynamic = 0;
  uint32_t n_ram_cpu = 0;
  uint32_t n_storage = 0;

  LayerLoad& operator+=(const LayerLoad& o) {
    cpu_us += o.cpu_us; cpu_bytes += o.cpu_bytes; gpu_us += o.gpu_us; gpu_bytes += o.gpu_bytes;
    dynamic_uses += o.dynamic_uses; storage_uses += o.storage_uses;
    n_gpu_pinned += o.n_gpu_pinned; n_gpu_dynamic += o.n_gpu_dynamic;
    n_ram_cpu += o.n_ram_cpu; n_storage += o.n_storage;
    return *this;
  }
  LayerLoad& operator-=(const LayerLoad& o) {
    cpu_us -= o.cpu_us; cpu_bytes -= o.cpu_bytes; gpu_us -= o.gpu_us; gpu_bytes -= o.gpu_bytes;
    dynamic_uses -= o.dynamic_uses; storage_uses -= o.storage_uses;
    n_gpu_pinned -= o.n_gpu_pinned; n_gpu_dynamic -= o.n_gpu_dynamic;
    n_ram_cpu -= o.n_ram_cpu; n_storage -= o.n_storage;
    return *this;
  }
};

class CostModel {
 public:
  // Errors: profile shape differs from the model's; a dtype's block size does not divide
  // n_embd or n_ff_exp; hardware without a CPU ISA entry or storage point.
  static Result<CostModel> create(const ModelShape& shape, const Profile& profile,
                                  const HardwareProfile& hw, const CostOptions& options);

  uint64_t expert_bytes() const { return expert_bytes_; }
  bool has_gpu() const { return has_gpu_; }
  bool unified() const { return unified_; }
  uint32_t n_layer() const { return n_layer_; }
  uint32_t n_expert() const { return n_expert_; }

  // Per-use contribution of expert (l, e) to its layer's load when placed in `tier`.
  void add_expert(LayerLoad& load, uint32_t layer, uint32_t expert, ExpertTier tier, int sign = 1) const;
  LayerLoad layer_load(uint32_t layer, std::span<const ExpertTier> tiers) const;
  LayerCost layer_cost(uint32_t layer, const LayerLoad& load, const Placement& globals) const;

  double head_us(Device d) const;
  // submit_us when anything runs on the GPU.
  double submit_us() const { return submit_wait_us_; }

  // Bytes that do not depend on the expert tiers: (gpu, ram) for the given attention and head.
  void fixed_memory(Device attention, Device head, uint64_t& gpu, uint64_t& ram) const;
  // Expert-dependent bytes of one layer: (gpu, ram, storage).
  void layer_memory(const LayerLoad& load, const Placement& globals, uint64_t& gpu, uint64_t& ram,
                    uint64_t& storage) const;

  // Errors (invalid_argument) when the placement's sizes do not match the shape, or it
  // puts work on a GPU the hardware profile does not have.
  Result<Prediction> evaluate(const Placement& placement) const;

  double activation_probability(uint32_t layer, uint32_t expert) const {
    return p_[static_cast<size_t>(layer) * n_expert_ + expert];
  }
  double gate_activity(uint32_t layer, uint32_t expert) const {
    return a_[static_cast<size_t>(layer) * n_expert_ + expert];
  }

 private:
  double misses(uint32_t layer, double uses, uint32_t resident, uint32_t slots) const;

  uint32_t n_layer_ = 0, n_expert_ = 0;
  uint64_t expert_bytes_ = 0;
  bool has_gpu_ = false, unified_ = false, shared_bus_ = false, tied_ = true;
  double shared_gbps_ = 0;
  double cpu_bw_ = 0, cpu_gflops_ = 0, cpu_dense_us_ = 0, cpu_gate_us_ = 0;
  double gpu_bw_ = 0, gpu_gflops_ = 0, gpu_expert_us_ = 0, upload_gbps_ = 0, submit_wait_us_ = 0;
  double storage_gbps_ = 0, storage_latency_us_ = 0;
  double expert_flops_ = 0;            // 6 n_embd n_ff_exp per token
  uint32_t batch_ = 1;
  std::vector<double> attn_cpu_us_, attn_gpu_us_, attn_bytes_;  // [layer], per token
  uint64_t attn_weight_bytes_ = 0, kv_bytes_total_ = 0, head_bytes_ = 0, embd_bytes_ = 0;
  double head_cpu_us_ = 0, head_gpu_us_ = 0;
  std::vector<double> p_, a_;                 // [layer * n_expert + expert]
  std::vector<double> uses_total_;            // [layer] sum of p_e
  std::vector<std::vector<double>> lru_;      // [layer][c]
};

}  // namespace tandem
