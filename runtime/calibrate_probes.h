// Internal to runtime/calibrate*.cpp: the three probes calibrate() runs, each filling its part
// of a HardwareProfile, and the helpers they share. Contracts and units: runtime/calibrate.h.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

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
