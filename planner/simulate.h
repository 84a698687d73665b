// simulate: replays a routing trace against a Plan on a HardwareProfile, running the LRU
// caches the executor runs, and reports per-tier hit rates, bytes moved and tokens/s.
//
// RoutingTrace JSON (schema_version 1):
//   { "schema_version": 1, "model_hash": str, "n_layer": u32, "n_expert": u32,
//     "tokens": [ [ [expert ids of layer 0], [ids of layer 1], ... ], ... ] }
// one entry per token, one list per layer, ids in rank order (top-1 first), each id in
// [0, n_expert) and not repeated. Errors name the path ("trace.json: tokens[3][7][1] ...").
//
// Caches, per layer, starting empty: gpu-pinned experts always hit; gpu-dynamic experts go
// through an LRU of n_dynamic_slots entries (a miss uploads expert_bytes); storage experts
// through an LRU of ram_cache_experts entries (a miss reads expert_bytes from storage);
// ram_cpu experts always hit. A slot count of 0 with experts in that tier acts as 1 (as in
// cost_model.h). The first `warmup_tokens` tokens fill the caches and are not counted.
//
// Time per token: the plan's predicted compute parts of each layer (attention, CPU and GPU
// experts, sync) with the transfer parts replaced by this token's simulated misses:
//   upload_us  = misses * expert_bytes / upload_gbps
//   storage_us = misses * expert_bytes / storage_throughput + (misses > 0) * latency_us
//   and the shared-bus term re-counted with the simulated bytes; combined per layer by
//   combine_layer_us (cost_model.h). tokens_per_s = 1e6 / mean token time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "planner/hardware_profile.h"
#include "planner/plan.h"

namespace tandem {

struct RoutingTrace {
  static constexpr int k_schema_version = 1;
  std::string model_hash;
  uint32_t n_layer = 0;
  uint32_t n_expert = 0;
  std::vector<std::vector<std::vector<int32_t>>> tokens;  // [token][layer][rank]
};

Result<RoutingTrace> routing_trace_from_json(std::string_view text, std::string_view display_name);
std::string routing_trace_to_json(const RoutingTrace& trace);
Result<RoutingTrace> load_routing_trace(const std::filesystem::path& path);
Status save_routing_trace(const RoutingTrace& trace, const std::filesystem::path& path);

struct SimulateOptions {
  uint32_t warmup_tokens = 0;
  uint32_t gpu_index = 0;
};

struct TierStats {
  uint64_t uses = 0;
  uint64_t hits = 0;
  double hit_rate() const { return uses ? static_cast<double>(hits) / static_cast<double>(uses) : 1.0; }
};

struct SimulationResult {
  uint64_t n_tokens = 0;  // counted (after warm-up)
  TierStats gpu_pinned, gpu_dynamic, ram_cpu, storage;
  double upload_bytes_per_token = 0;
  double storage_bytes_per_token = 0;
  double token_us = 0;  // mean
  double tokens_per_s = 0;
};

// Errors (invalid_argument): trace and plan of different shapes or model hashes (an empty
// hash on either side is not compared), warm-up leaving no token, a plan using a GPU the
// hardware profile lacks.
Result<SimulationResult> simulate(const RoutingTrace& trace, const Plan& plan, const HardwareProfile& hw,
                                  const SimulateOptions& options = {});

std::string simulation_summary(const SimulationResult& r);

}  // namespace tandem
