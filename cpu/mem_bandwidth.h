// Read bandwidth of this machine's RAM: the ceiling every weight-streaming kernel is held
// against (bench columns "GB/s of peak", the planner's cpu bandwidth in the hardware profile).
//
// Method (STREAM's "sum" kernel, read only): n_threads threads each own a fixed contiguous
// share of one buffer, touch it first (so on NUMA machines the pages sit on the thread's
// node), then, per pass, add up its 64-bit words with the widest loads of the chosen Isa.
// One warm-up pass, then `reps` timed passes; the best pass counts (the least disturbed).
// A pass lasts from the first thread starting its sum to the last one finishing. GB = 1e9 bytes.
//
// Threading: each call starts and joins its own std::threads; calls are independent.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "cpu/cpu_features.h"

namespace tandem::cpu {

struct BandwidthResult {
  double gbps = 0;       // bytes / seconds / 1e9
  uint64_t bytes = 0;    // bytes read per pass (the buffer, rounded down to whole lines)
  double seconds = 0;    // the best pass
  int n_threads = 0;     // threads actually used
};

// Read bandwidth with the widest loads the host has (best_isa(), honours TANDEM_MAX_ISA).
// n_threads: threads (0 = all hardware threads, at most 4096). bytes: buffer size, at least 4 KiB per thread.
// Errors: invalid_argument (negative threads, reps < 1, a buffer smaller than 4 KiB per
// thread); out_of_memory when the buffer cannot be allocated or exceeds physical RAM.
Result<BandwidthResult> measure_read_bandwidth(int n_threads, uint64_t bytes = 512ull << 20,
                                               int reps = 5);

// The same with the loads of one Isa. Errors as above, plus unsupported when the host or
// this build cannot run `isa` (see kernels_for).
Result<BandwidthResult> measure_read_bandwidth(Isa isa, int n_threads,
                                               uint64_t bytes = 512ull << 20, int reps = 5);

// Sum (mod 2^64) of the n_words 64-bit words at p: the per-thread loop. p is 64-byte
// aligned; any n_words (tails included). Every Isa gives the same sum (integer adds).
using ReadSumFn = uint64_t (*)(const uint64_t* p, size_t n_words);

// The loop for `isa`, or nullptr when the host cannot run it or this build lacks it.
ReadSumFn read_sum_for(Isa isa);

}  // namespace tandem::cpu
