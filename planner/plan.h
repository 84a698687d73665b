// Plan: where every expert lives and where each part of a token's work runs, with the cost
// model's predictions and a reason for each choice. Written by make_plan (planner.h), read
// by the runtime's executor and by `tandem simulate`.
//
// Expert tiers (JSON "tier" + "pinned"):
//   gpu, pinned      resident in GPU memory for the whole run; executed on the GPU
//   gpu, not pinned  "dynamic": kept in RAM, executed on the GPU through the layer's
//                    n_dynamic_slots LRU slots; a miss uploads the expert first
//   ram_cpu (pinned) resident in RAM, executed on the CPU (sparse ReGLU kernel, spec §5.1)
//   storage          read from the model file on a miss into the layer's ram_cache_experts
//                    LRU slots (spec §5.2), executed on the CPU
//
// JSON (schema_version 1): { "schema_version", "model_name", "model_hash", "hardware_name",
//   "objective": "decode"|"prefill", "solver": "exact"|"heuristic", "shape": {n_layer, n_expert},
//   "attention": "cpu"|"gpu", "output_head": "cpu"|"gpu", "n_dynamic_slots", "ram_cache_experts",
//   "expert_bytes", "predicted": {token_us, tokens_per_s, head_us, submit_us,
//   upload_bytes_per_token, storage_bytes_per_token, dynamic_hit_rate, ram_cache_hit_rate,
//   "layers": [{attention_us, cpu_experts_us, gpu_experts_us, upload_us, storage_us, sync_us,
//   bandwidth_us, total_us}]}, "memory": {gpu_bytes, ram_bytes, storage_bytes},
//   "reasons": [str], "layers": [{"experts": [{"tier", "pinned", "reason"}]}] }
// Reading checks the schema version, every field's type and the sizes against the shape.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "planner/budget.h"

namespace tandem {

enum class ExpertTier : uint8_t { gpu_pinned, gpu_dynamic, ram_cpu, storage };
enum class Device : uint8_t { cpu, gpu };

std::string_view device_name(Device d);
// "gpu (pinned)", "gpu (dynamic)", "ram_cpu", "storage".
std::string_view expert_tier_name(ExpertTier t);
inline bool runs_on_gpu(ExpertTier t) { return t == ExpertTier::gpu_pinned || t == ExpertTier::gpu_dynamic; }

// The decisions, without predictions: what the cost model evaluates.
struct Placement {
  Device attention = Device::cpu;
  Device output_head = Device::cpu;
  uint32_t n_dynamic_slots = 0;    // GPU LRU slots per layer (used by gpu-dynamic experts)
  uint32_t ram_cache_experts = 0;  // RAM LRU slots per layer (used by storage experts)
  std::vector<std::vector<ExpertTier>> tiers;  // [layer][expert]
};

// Times in microseconds per token; bytes per token.
struct LayerCost {
  double attention_us = 0;
  double cpu_experts_us = 0;
  double gpu_experts_us = 0;
  double upload_us = 0;
  double storage_us = 0;
  double sync_us = 0;
  double bandwidth_us = 0;  // shared-bus lower bound (0 when the bus is not shared)
  double total_us = 0;
  double upload_bytes = 0;
  double storage_bytes = 0;
  double dynamic_accesses = 0;  // expected gpu-dynamic expert uses per token
  double dynamic_misses = 0;
  double storage_accesses = 0;
  double storage_misses = 0;
};

struct MemoryUse {
  uint64_t gpu_bytes = 0;
  uint64_t ram_bytes = 0;      // includes GPU bytes on a unified-memory GPU
  uint64_t storage_bytes = 0;  // experts left on storage
};

struct Prediction {
  std::vector<LayerCost> layers;
  double head_us = 0;
  double submit_us = 0;
  double token_us = 0;
  double tokens_per_s = 0;
  double upload_bytes_per_token = 0;
  double storage_bytes_per_token = 0;
  double dynamic_hit_rate = 1;    // over gpu-dynamic expert uses (1 when there are none)
  double ram_cache_hit_rate = 1;  // over storage expert uses (1 when there are none)
  MemoryUse memory;
};

struct Plan {
  static constexpr int k_schema_version = 1;

  std::string model_name;
  std::string model_hash;
  std::string hardware_name;
  Objective objective = Objective::decode;
  std::string solver;  // "exact" or "heuristic"
  uint32_t n_layer = 0;
  uint32_t n_expert = 0;
  uint64_t expert_bytes = 0;
  Placement placement;
  Prediction predicted;
  std::vector<std::string> reasons;                    // global choices
  std::vector<std::vector<std::string>> expert_reasons;  // [layer][expert]
};

Result<Plan> plan_from_json(std::string_view text, std::string_view display_name);
std::string plan_to_json(const Plan& plan);
Result<Plan> load_plan(const std::filesystem::path& path);
Status save_plan(const Plan& plan, const std::filesystem::path& path);

// Human-readable summary; with `explain`, every reason as well.
std::string plan_summary(const Plan& plan, bool explain);

}  // namespace tandem
