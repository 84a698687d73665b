// Internal to runtime/calibrate*.cpp: the three probes calibrate() runs, each filling its part
// of a HardwareProfile, and the helpers they share. Contracts and units: runtime/calibrate.h.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "planner/hardware_profile.h"
#include "runtime/calibrate.h"

namespace tandem::calibrate_detail {

// hw.cpu: name, cores, threads and one isa entry per (Isa, thread count).
Status probe_cpu(const CalibrateOptions& o, HardwareProfile& hw);
// hw.gpus: the selected device, or none.
Status probe_gpu(const CalibrateOptions& o, HardwareProfile& hw);
// hw.storage.
Status probe_storage(const CalibrateOptions& o, HardwareProfile& hw);

// Bytes of one expert slab (gate, up or down of one expert): n_ff_exp rows of n_embd.
uint64_t expert_slab_bytes(const CalibrateOptions& o);

// Synthetic weights for one expert slab: every block's scale 2^-7, quants random (seeded)
// or, with `all_positive`, the largest positive quant (a gate that no negative input activates).
void fill_synthetic_slab(DType dtype, uint8_t* dst, uint64_t bytes, uint64_t seed, bool all_positive);

// The GPU expert timing (GpuProfile::expert_ffn_us) runs what the GPU executors run
// (runtime/hybrid_executor.cpp, gpu_graph.cpp): gate mul_mat_vec_id, the ReLU-sparse up
// (MulMatVecIdOptions::skip_if_gate_le_zero), reglu, then down as the shape's down_layout has
// it (transposed: the sparse mul_mat_vec_t_id; standard: mul_mat_vec_id over every row). Its
// inputs give this fraction of gate outputs <= 0: 0.6, the SmallThinker report's ">60% neurons
// idle" (spec §5.1, TR §1) and the model maker's default relu_sparsity. The CPU probe times the
// two ends instead (dense, and gate only = every neuron inactive) because the cost model
// interpolates the CPU time by each expert's measured gate activity; it takes one GPU figure.
inline constexpr double k_gpu_expert_inactive_fraction = 0.6;

// The input x of the expert timings: -1 in every element (the CPU probe's too).
inline constexpr float k_expert_probe_x = -1.0f;

// Synthetic gate weights for one expert slab (n_ff rows of n_embd, `dtype` q4_0 or q8_0; n_embd
// a multiple of 32) such that with x = k_expert_probe_x exactly `n_inactive` of the n_ff gate
// outputs are <= 0 (rows holding fill_synthetic_slab's all-positive quants) and the others > 0
// (every quant at its most negative), the inactive rows drawn at random (seeded) as a ReLU
// model's are scattered, not grouped. Rows are whole: row r is bytes [r, r + 1) * row size.
void fill_gate_slab(DType dtype, uint8_t* dst, int64_t n_embd, int64_t n_ff, int64_t n_inactive,
                    uint64_t seed);

inline void progress(const CalibrateOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace tandem::calibrate_detail
