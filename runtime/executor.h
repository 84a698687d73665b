// Executor: what a Session drives to turn tokens into logits — a KV cache plus the forward
// pass, wherever they live: the CPU (Forward over a host KvCache), the GPU (every layer, the
// cache and the output head on a Vulkan device) or both (a placement plan).
//
// eval() appends `tokens` at positions n_past() … n_past()+n-1 and returns logits only for
// the rows asked for (LogitsRows::last: (1, n_vocab); LogitsRows::all: (n, n_vocab) row-major).
// Errors as Forward::eval (forward.h): invalid_argument for no tokens, an id outside
// [0, n_vocab) or a context overflow (the cache is unchanged then); backend errors (device
// lost, out of device memory, an expert read that failed) leave the cache holding the ubatches
// completed before the failure.
//
// Not thread-safe: one eval at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "runtime/forward.h"
#include "runtime/forward_observer.h"

namespace tandem {

// One line of "where the memory went" per device, printed by `tandem run` (issue 5: "one
// line per device with the memory it uses and how").
struct DeviceMemoryLine {
  std::string device;  // "CPU", "GPU 0 (llvmpipe (LLVM 15.0.6, 256 bits))"
  std::string detail;  // "weights 30.1 MiB zero-copy (host-imported file pages), KV 4.0 MiB device-local, …"
};

// Work counters since the last reset_counters(), for `tandem bench` (bytes per token, hit
// rates, synchronisations). Executors fill what applies to them and leave the rest 0.
struct ExecutorCounters {
  uint64_t tokens = 0;          // tokens evaluated (prompt and decode)
  uint64_t evals = 0;           // eval() calls
  uint64_t weight_bytes = 0;    // weight bytes the kernels had to read (CPU and GPU), experts included
  uint64_t expert_bytes = 0;    // of which expert weights
  uint64_t storage_bytes = 0;   // expert bytes read from storage (cache misses)
  uint64_t upload_bytes = 0;    // bytes copied host -> device
  uint64_t ram_hits = 0, ram_misses = 0;  // expert RAM-cache lookups (streamed experts)
  uint64_t gpu_hits = 0, gpu_misses = 0;  // dynamic GPU expert slot lookups
  uint64_t syncs = 0;           // CPU<->GPU synchronisations (waits on the other side)
  uint64_t gpu_memory_bytes = 0;  // device memory held now (not reset)
};

class Executor {
 public:
  virtual ~Executor() = default;

  // "cpu", "gpu" or "hybrid" (the --placement names).
  virtual std::string_view placement() const = 0;
  virtual uint32_t n_ctx() const = 0;
  virtual uint32_t n_past() const = 0;

  // Forgets everything (n_past = 0).
  virtual void clear() = 0;
  // Forgets positions >= n (prefix reuse). Errors as KvCache::truncate; the caller then
  // clear()s and re-evaluates.
  virtual Status truncate(uint32_t n) = 0;

  virtual Status eval(std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) = 0;

  // Not owned; nullptr to stop observing. Executors that cannot report a hook's data (a GPU
  // that does not read back per-neuron counts) say so in their header.
  virtual void set_observer(ForwardObserver* observer) = 0;

  virtual std::vector<DeviceMemoryLine> memory_lines() const = 0;

  virtual ExecutorCounters counters() const = 0;
  virtual void reset_counters() = 0;
};

}  // namespace tandem
