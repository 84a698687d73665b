// CpuExecutor: the CPU placement (`--placement cpu`) — Forward (forward.h) over a host
// KvCache (kv_cache.h), every weight read in place from the model mapping.
// Ops: `ops` (forward_ops.h); nullptr = the fast SIMD ops where they are built, else the
// plain ones. Counters: weight and expert bytes as the ops count them (ForwardOpsCounters).
#pragma once

#include <memory>

#include "core/dtype.h"
#include "runtime/executor.h"
#include "runtime/forward_ops.h"
#include "runtime/kv_cache.h"
#include "runtime/convert.h"
#include "runtime/model.h"

namespace tandem {

struct CpuExecutorOptions {
  uint32_t n_ctx = 4096;  // resolved (> 0)
  uint32_t n_ubatch = 512;
  int n_threads = 0;      // 0 = every hardware thread
  DType cache_type = DType::f16;
  // --transpose-down: for a model whose ffn_down_exps has the standard layout, transpose it in
  // memory at load (runtime/convert.h, requantized: the precision cost is stated there) so the
  // sparse FFN reads only active neurons' down rows. Ignored for already transposed models.
  bool transpose_down = false;
  // The CPU repack (runtime/convert.h repack_for_cpu): each neuron's expert up and down rows
  // side by side (transposed-down models), and q4_0 matrices as q4_0x16 where the ops read that
  // layout (ForwardOps::reads_q4_0x16: the fast ops on AVX2 and AVX-512), for a model mapped from its
  // file (bit-identical results; the source pages are dropped so the resident set stays the
  // model's size). Skipped for a model read into memory (--no-mmap: the copy would double
  // those bytes) and after transpose_down. false = --no-repack.
  bool repack = true;
};

class CpuExecutor final : public Executor {
 public:
  // `model` must outlive the executor. Errors: KvCache::create's and Forward::create's.
  static Result<std::unique_ptr<CpuExecutor>> create(const Model& model, const CpuExecutorOptions& options,
                                                     std::unique_ptr<ForwardOps> ops);

  std::string_view placement() const override { return "cpu"; }
  uint32_t n_ctx() const override { return kv_.n_ctx(); }
  uint32_t n_past() const override { return kv_.n_past(); }
  void clear() override { kv_.clear(); }
  Status truncate(uint32_t n) override { return kv_.truncate(n); }
  Status eval(std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) override;
  void set_observer(ForwardObserver* observer) override { forward_->set_observer(observer); }
  std::vector<DeviceMemoryLine> memory_lines() const override;
  ExecutorCounters counters() const override;
  void reset_counters() override;

  Forward& forward() { return *forward_; }
  uint64_t transposed_bytes() const;  // memory held by --transpose-down's copies
  uint64_t repacked_bytes() const { return repacked_ ? repacked_->bytes : 0; }  // the repack's buffers
  KvCache& kv() { return kv_; }

 private:
  CpuExecutor(const Model& model, KvCache kv) : model_(model), kv_(std::move(kv)) {}
  const Model& model_;
  std::unique_ptr<TransposedDown> transposed_;  // set with transpose_down; Forward views it
  std::unique_ptr<CpuRepack> repacked_;    // set by the repack; Forward views it
  KvCache kv_;
  std::unique_ptr<Forward> forward_;
  ForwardOps* ops_ = nullptr;  // owned by forward_
  uint64_t tokens_ = 0, evals_ = 0;
};

}  // namespace tandem
