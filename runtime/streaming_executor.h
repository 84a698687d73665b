// StreamingExecutor: the CPU half of hybrid execution (issue 7) as an Executor (executor.h):
// Forward (forward.h) over a host KvCache with StreamingOps (streaming_ops.h) over the base
// CPU ops (the fast ones, forward_ops_fast.h, unless options.make_base_ops says otherwise),
// and the router-driven Prefetcher (prefetcher.h) as the forward pass's observer (chained to
// the user's observer, which sees every hook as with a plain Forward).
//
// Where experts live (ExpertStore, expert_store.h), first match wins:
//   options.store  explicit tiers (tests, the hybrid executor's CPU side);
//   options.plan   a planner Plan (ram_cpu -> ram, storage -> stream, gpu -> ram here);
//   mem_limit > 0  every expert streamed; cache slots = (limit - non-expert weights - KV -
//                  reserve) / slot size; out_of_memory naming the figures when not even one
//                  layer's routed experts fit;
//   otherwise      every expert in RAM (the mapping).
//
// Memory-limited mode (mem_limit > 0): the expert pages of the mapping are never touched by
// the compute (streamed experts come from the cache slots, read with O_DIRECT, or buffered
// reads followed by POSIX_FADV_DONTNEED where the file system refuses O_DIRECT); at creation
// the executor drops whatever expert pages loading the model touched (madvise
// MADV_DONTNEED, posix_fadvise DONTNEED). The non-expert weights are read through the mapping.
// So resident memory ≈ non-expert weights + KV + cache slots + activations ≤ the limit.
//
// Counters (ExecutorCounters): tokens, evals; ram_hits/ram_misses (streamed experts found
// in RAM, or not, when the router chose them); storage_bytes (slab bytes read on misses);
// weight_bytes/expert_bytes from the ops (streaming_ops.h). memory_lines(): one CPU line.
//
// Trace (options.trace non-empty): Chrome trace JSON written when the executor is destroyed
// (and by write_trace()): "eval" spans, per layer pass "router", "prefetch", "attention",
// "experts", per expert "expert" and "wait", cache "hit"/"miss" instants, and per storage load
// a "read" span (cat "io", from submission to the completion of its last read, on the
// reader's thread), args layer/expert/pass/bytes.
//
// Not thread-safe: one eval at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

#include "core/dtype.h"
#include "core/status.h"
#include "planner/plan.h"
#include "runtime/executor.h"
#include "runtime/expert_store.h"
#include "runtime/forward_ops.h"
#include "runtime/io_uring_reader.h"
#include "runtime/model.h"
#include "runtime/prefetcher.h"
#include "runtime/streaming_ops.h"
#include "runtime/trace.h"

namespace tandem {

struct StreamingExecutorOptions {
  uint32_t n_ctx = 4096;
  uint32_t n_ubatch = 512;
  int n_threads = 0;
  DType cache_type = DType::f16;
  uint64_t mem_limit = 0;      // bytes; 0 = none
  const Plan* plan = nullptr;  // tiers; nullptr = from mem_limit (or all ram)
  CachePolicyKind policy = CachePolicyKind::lru;
  std::filesystem::path trace;  // Chrome trace output, empty = none

  // Beyond the factory's needs (defaults are right for `tandem run`):
  const ExpertStoreConfig* store = nullptr;  // explicit tiers; wins over plan and mem_limit
  std::function<std::unique_ptr<ForwardOps>()>
      make_base_ops;                     // empty = make_fast_cpu_ops(cpu::kernels())
  AsyncReaderOptions io;                 // queue depth, O_DIRECT, fault injection (io.faults)
  FrequencyPolicyOptions frequency;      // for CachePolicyKind::frequency
  uint64_t reserve_bytes = 64ull << 20;  // mem_limit: activations, code, heaps
  bool prefetch = true;                  // false: experts are read only when the op needs them
  bool keep_trace_in_memory = false;     // trace() returns the events even without a path
};

class StreamingExecutor;

// `model` must outlive the executor.
Result<std::unique_ptr<Executor>> make_streaming_executor(const Model& model,
                                                          const StreamingExecutorOptions& options);
// The same, typed (tests and benchmarks read stats() and trace()).
Result<std::unique_ptr<StreamingExecutor>> make_streaming_executor_typed(
    const Model& model, const StreamingExecutorOptions& options);

class StreamingExecutor final : public Executor {
 public:
  ~StreamingExecutor() override;

  std::string_view placement() const override { return "cpu"; }
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

  const ExpertStore& store() const;
  StreamingOpsStats ops_stats() const;     // since the last reset_counters()
  PrefetcherStats prefetch_stats() const;  // since the last reset_counters()
  // The trace so far (nullptr when neither options.trace nor keep_trace_in_memory).
  const Trace* trace() const;
  // Writes the trace to options.trace now (ok when there is none).
  Status write_trace() const;

  struct Impl;

 private:
  explicit StreamingExecutor(std::unique_ptr<Impl> impl);
  friend Result<std::unique_ptr<StreamingExecutor>> make_streaming_executor_typed(
      const Model&, const StreamingExecutorOptions&);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
