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
//   GPU expert time per use: t_gpu = gpu.expert_ffn_us (calibrated ReLU-sparse at 60% inactive
//   neurons, not scaled by a_e), or B / gpu_bw (dense bytes B).
//   cpu_experts_us = sum over ram_cpu and storage experts of p_e * t_cpu(a_e)
//   gpu_experts_us = sum over gpu experts (pinned and dynamic) of p_e * t_gpu
//   attention_us   = cpu: isa.attention_us or attention bytes / cpu_bw; gpu likewise.
//   Misses of an LRU tier (gpu-dynamic experts through n_dynamic_slots GPU slots, storage
//   experts through ram_cache_experts RAM slots; per layer): the LRU sees only the accesses
//   to the experts of that tier, D, so its misses follow from D's own probabilities, not from
//   the whole layer's stream (pinned and RAM experts never enter it). With S = min(slots, |D|)
//   (at least 1): S >= |D| gives no misses (every expert of D stays cached); otherwise Che's
//   approximation (Che, Tung, Wang 2002, "Hierarchical Web caching systems: modeling, design
//   and experimental results"; for LRU under independent references, Fricker, Robert, Roberts
//   2012, "A versatile and accurate approximation for LRU cache performance") in token time:
//     q_e = p_e per token (decode), or P_e = 1 - (1 - p_e)^N per batch (prefill)
//     occupancy O(T) = sum_{e in D} 1 - (1 - q_e)^T      (experts used in the last T steps)
//     T_S solves O(T_S) = S                              (the LRU's characteristic time)
//     misses per step = sum_{e in D} q_e (1 - q_e)^(T_S - 1/2), per token = that / N (N = 1 in decode)
//   e hits when its previous use is at most T_S whole steps back: P = 1 - (1 - q)^floor(T_S);
//   the exponent T_S - 1/2 is the midpoint (continuity) correction of that floor. Without it,
//   the continuous form counts hits for S below one token's accesses to D, which the LRU
//   cannot have: a token's experts are distinct, so they cannot hit each other.
//   Locality (decode): Che's formula assumes tokens pick experts independently. Real routing
//   repeats experts across nearby tokens, so each layer is calibrated on the profile's
//   whole-stream LRU curve h(c) (profile.h): at each grid time T, the whole layer's LRU of
//   the same characteristic time holds c = O_all(T) experts and missed
//   m(T) = (h(n_expert) - h(c)) * A per token in the profile (A = sum_e p_e; cold misses left
//   out: a start-up cost); T' is the time at which the independent-reference misses of the
//   whole layer equal m(T). The tier's misses are then taken at T'(T_S) instead of T_S
//   (a time dilation; T' is made non-decreasing, so more slots never mean more misses).
//   Without a usable curve (other sizes, prefill, or where the whole layer would fit in c:
//   c > n_expert - 1 or a miss rate below 1%) the last dilation ratio is kept (identity when
//   there is none). This also absorbs part of Che's own error at small S.
//   Assumptions: locality is alike for all experts of a layer (the same dilation for every
//   tier set D); which experts are pinned does not matter, only which are in D: every
//   expert adds its own terms, so the sums are exact for whatever set the planner puts in
//   the tier (no "hottest first" assumption).
//   Evaluation: O and the misses sum are kept per layer and tier as sums over D at the times
//   T_g = 0.5 * 1.5^g, g < k_lru_grid (LruSums, updated as experts move); T_S and T' are
//   found by linear interpolation between grid points (cost_model_test.cpp: within 0.01 of
//   the hit rate of the exact root; planning the 21B shape stays well under a second).
//   Measured (cost_model_test.cpp): within 0.02 of an LRU replay of the tier's own stream
//   behind a pinned hot head (the previous whole-stream estimate was off by up to 0.70).
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
//   N * 2 * attention params / gflops); misses use the same LRU estimate with batches as
//   steps (q_e = P_e). The KV-cache term is left out of prefill (it depends on the prompt's position).
//
// Memory (MemoryUse): token_embd always in RAM; attention weights and KV cache
//   (2 * context_length * n_embd_k_gqa * 2 bytes per layer, f16) on the attention device;
//   output head on its device (a GPU copy when tied and on GPU); gpu-pinned experts on GPU;
//   gpu-dynamic experts in RAM plus slots*B per layer on GPU; ram_cpu in RAM; storage
//   experts' RAM cache slots*B per layer in RAM. On a unified-memory GPU, ram_bytes includes
//   gpu_bytes.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

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

// Che sums of one LRU tier's experts D at the grid times T_g (see the Misses paragraph):
// occupancy[g] = sum_{e in D} 1 - (1 - q_e)^T_g, misses[g] = sum_{e in D} q_e (1 - q_e)^(T_g - 1/2).
// float: the planner copies and updates these for every move it scores; 1e-7 relative is far
// below the approximation's own error.
inline constexpr size_t k_lru_grid = 32;
struct LruSums {
  std::array<float, k_lru_grid> occupancy{};
  std::array<float, k_lru_grid> misses{};

  // Raw pointers: the planner's hottest loop, kept cheap in unoptimised builds too.
  LruSums& operator+=(const LruSums& o) {
    float* a = occupancy.data(); float* b = misses.data();
    const float* c = o.occupancy.data(); const float* d = o.misses.data();
    for (size_t g = 0; g < k_lru_grid; ++g) { a[g] += c[g]; b[g] += d[g]; }
    return *this;
  }
  LruSums& operator-=(const LruSums& o) {
    float* a = occupancy.data(); float* b = misses.data();
    const float* c = o.occupancy.data(); const float* d = o.misses.data();
    for (size_t g = 0; g < k_lru_grid; ++g) { a[g] -= c[g]; b[g] -= d[g]; }
    return *this;
  }
};

// Aggregates of one layer's placement: what layer time depends on. Sums are per token.
// LoadSums: the scalar part (cheap to copy); LayerLoad adds the LRU tiers' Che sums.
struct LoadSums {
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
};

struct LayerLoad : LoadSums {
  LruSums dynamic_lru;        // over gpu-dynamic experts
  LruSums storage_lru;        // over storage experts

  LayerLoad& operator+=(const LayerLoad& o) {
    cpu_us += o.cpu_us; cpu_bytes += o.cpu_bytes; gpu_us += o.gpu_us; gpu_bytes += o.gpu_bytes;
    dynamic_uses += o.dynamic_uses; storage_uses += o.storage_uses;
    n_gpu_pinned += o.n_gpu_pinned; n_gpu_dynamic += o.n_gpu_dynamic;
    n_ram_cpu += o.n_ram_cpu; n_storage += o.n_storage;
    dynamic_lru += o.dynamic_lru; storage_lru += o.storage_lru;
    return *this;
  }
  LayerLoad& operator-=(const LayerLoad& o) {
    cpu_us -= o.cpu_us; cpu_bytes -= o.cpu_bytes; gpu_us -= o.gpu_us; gpu_bytes -= o.gpu_bytes;
    dynamic_uses -= o.dynamic_uses; storage_uses -= o.storage_uses;
    n_gpu_pinned -= o.n_gpu_pinned; n_gpu_dynamic -= o.n_gpu_dynamic;
    n_ram_cpu -= o.n_ram_cpu; n_storage -= o.n_storage;
    dynamic_lru -= o.dynamic_lru; storage_lru -= o.storage_lru;
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

  // Expected misses per token of an LRU of `slots` entries over the n_tier experts summed
  // in `sums` whose uses per token are `uses` (the Misses paragraph; in [0, uses]).
  double lru_misses(uint32_t layer, const LruSums& sums, double uses, uint32_t n_tier, uint32_t slots) const;
  // The grid times T_g of LruSums (steps: tokens in decode, batches in prefill).
  static double lru_time(size_t g);

 private:

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
  std::vector<LruSums> lru_terms_;            // [layer * n_expert + expert]: e's own Che terms
  std::vector<float> lru_dilation_;           // [layer * k_lru_grid + g]: locality (calibrate_lru)

  void calibrate_lru(uint32_t layer, const std::vector<double>& lru_hit_rate);
};

}  // namespace tandem
