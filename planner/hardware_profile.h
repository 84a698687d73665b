// HardwareProfile: what the planner knows about a machine — CPU, RAM, GPUs, storage, and
// whether CPU and GPU share one memory bus. Plain data; filled from a JSON file (hand-written,
// e.g. planner/hardware/steam-deck.json, or later by `tandem calibrate`).
//
// Units: bandwidths and throughputs in GB/s (1 GB = 1e9 bytes), times in microseconds,
// sizes in bytes, compute in GFLOP/s. A time field that is 0 means "derive it from bytes and
// bandwidth" (see cost_model.h for each derivation).
//
// JSON (schema_version 1), every field required unless marked optional:
//   { "schema_version": 1, "name": str, "notes": [str, ...] (optional),
//     "ram_bytes": u64 > 0,
//     "shared_memory_bus": bool, "shared_bandwidth_gbps": num (> 0 when shared_memory_bus),
//     "cpu": { "name": str, "n_cores": u32 >= 1, "n_threads": u32 >= 1,
//              "isa": [ { "isa": str, "n_threads": u32 >= 1, "read_bandwidth_gbps": > 0,
//                         "compute_gflops": > 0, "expert_ffn_dense_us": >= 0,
//                         "expert_ffn_gate_us": >= 0, "attention_us": >= 0 }, ... ] (>= 1) },
//     "gpus": [ { "name": str, "type": "integrated"|"discrete", "unified_memory": bool,
//                 "memory_bytes": u64 > 0, "bandwidth_gbps": > 0, "upload_gbps": > 0,
//                 "zero_copy_gbps": >= 0, "compute_gflops": > 0, "expert_ffn_us": >= 0,
//                 "attention_us": >= 0, "submit_wait_us": >= 0 }, ... ] (may be empty),
//     "storage": { "name": str, "latency_us": >= 0,
//                  "random_read": [ { "block_bytes": u64 > 0, "queue_depth": u32 >= 1,
//                                     "throughput_gbps": > 0 }, ... ] (>= 1) } }
// Unknown keys are errors. Errors name the file and JSON path (invalid_file), a different
// schema_version is `unsupported`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tandem {

// One way of running the CPU kernels: an ISA at a thread count.
struct CpuIsaPerf {
  std::string isa;                 // "avx512", "avx2", "neon", "scalar"
  uint32_t n_threads = 1;
  double read_bandwidth_gbps = 0;  // streaming read bandwidth reached by the kernels
  double compute_gflops = 0;       // peak for prefill's roofline
  double expert_ffn_dense_us = 0;  // one expert, every neuron active (decode, 1 token); 0: derived
  double expert_ffn_gate_us = 0;   // one expert, no neuron active (gate rows only); 0: derived
  double attention_us = 0;         // attention of one layer for one token; 0: derived
};

struct CpuProfile {
  std::string name;
  uint32_t n_cores = 1;
  uint32_t n_threads = 1;
  std::vector<CpuIsaPerf> isa;  // at least one

  // The entry the runtime would run: the lowest measured expert_ffn_dense_us; when no entry has
  // one, the highest read bandwidth (ties: the first).
  const CpuIsaPerf& best() const;
};

enum class GpuType { integrated, discrete };
std::string_view gpu_type_name(GpuType t);

struct GpuProfile {
  std::string name;
  GpuType type = GpuType::discrete;
  bool unified_memory = false;   // device-local memory is host RAM (an iGPU)
  uint64_t memory_bytes = 0;     // what the device may allocate
  double bandwidth_gbps = 0;     // device reading its own memory
  double upload_gbps = 0;        // host -> device copy (PCIe, or a memcpy on unified)
  double zero_copy_gbps = 0;     // device reading host memory in place; 0 = not possible
  double compute_gflops = 0;
  double expert_ffn_us = 0;      // one expert, one token, ReLU-sparse at 60% inactive neurons (calibrate.h); 0: derived
  double attention_us = 0;       // one layer, one token; 0: derived
  double submit_wait_us = 0;     // one queue submit + fence wait round trip
};

// Random reads of `block_bytes` at `queue_depth` reach `throughput_gbps`.
struct StorageReadPoint {
  uint64_t block_bytes = 0;
  uint32_t queue_depth = 1;
  double throughput_gbps = 0;
};

struct StorageProfile {
  std::string name;
  double latency_us = 0;  // one random read at queue depth 1
  std::vector<StorageReadPoint> random_read;  // at least one

  // Throughput for reads of `block_bytes`: among the points at the largest block size not
  // above `block_bytes` (else the smallest block size), the one with the highest throughput.
  double throughput_gbps(uint64_t block_bytes) const;
};

struct HardwareProfile {
  static constexpr int k_schema_version = 1;

  std::string name;
  std::vector<std::string> notes;  // where the numbers come from
  uint64_t ram_bytes = 0;
  bool shared_memory_bus = false;     // CPU and GPU read weights over the same bus
  double shared_bandwidth_gbps = 0;   // that bus's total, when shared_memory_bus
  CpuProfile cpu;
  std::vector<GpuProfile> gpus;
  StorageProfile storage;
};

// `display_name` prefixes every error message (usually the file name).
Result<HardwareProfile> hardware_profile_from_json(std::string_view text,
                                                   std::string_view display_name);
std::string hardware_profile_to_json(const HardwareProfile& hw);
Result<HardwareProfile> load_hardware_profile(const std::filesystem::path& path);
Status save_hardware_profile(const HardwareProfile& hw, const std::filesystem::path& path);

}  // namespace tandem
