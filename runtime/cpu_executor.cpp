#include "runtime/cpu_executor.h"

#include <fmt/format.h>

#include "cpu/kernel_table.h"

namespace tandem {

Result<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const Model& model, const CpuExecutorOptions& options,
                                                         std::unique_ptr<ForwardOps> ops) {
  KvCacheOptions kv_opts;
  kv_opts.n_ctx = options.n_ctx;
  kv_opts.n_ubatch = options.n_ubatch;
  kv_opts.type = options.cache_type;
  TANDEM_ASSIGN_OR_RETURN(KvCache kv, KvCache::create(model.shape(), kv_opts));
  std::unique_ptr<CpuExecutor> ex(new CpuExecutor(model, std::move(kv)));
  ForwardOptions fwd;
  fwd.n_ubatch = options.n_ubatch;
  fwd.n_threads = options.n_threads;
  const ModelShape* shape = &model.shape();
  const ModelWeights* weights = &model.weights();
  if (options.transpose_down && model.shape().down_layout == DownLayout::standard) {
    TANDEM_ASSIGN_OR_RETURN(ex->transposed_, transpose_down_in_memory(model));
    shape = &ex->transposed_->shape;
    weights = &ex->transposed_->weights;
  }
  if (options.repack && !ex->transposed_ && model.file().file_backed()) {
    CpuRepackOptions ro;
    ro.drop_source = true;
    ro.q4_0x16 = ops != nullptr ? ops->reads_q4_0x16() : cpu::kernels().prefer_q4_0x16;  // null: Forward's fast ops
    TANDEM_ASSIGN_OR_RETURN(ex->repacked_, repack_for_cpu(*shape, *weights, ro));
    weights = &ex->repacked_->weights;
  }
  TANDEM_ASSIGN_OR_RETURN(ex->forward_, Forward::create(*shape, *weights, fwd, std::move(ops)));
  ex->ops_ = &ex->forward_->ops();
  return ex;
}

Status CpuExecutor::eval(std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) {
  TANDEM_RETURN_IF_ERROR(forward_->eval(kv_, tokens, rows, logits));
  tokens_ += tokens.size();
  ++evals_;
  return Status::success();
}

std::vector<DeviceMemoryLine> CpuExecutor::memory_lines() const {
  constexpr double mib = 1024.0 * 1024.0;
  return {{"CPU", fmt::format("weights {:.1f} MiB read in place from the mapped file (page cache, counted once), "
                              "KV cache {:.1f} MiB ({}), ops {}{}{}",
                              static_cast<double>(model_.file().file_size()) / mib,
                              static_cast<double>(kv_.size_bytes()) / mib, dtype_name(kv_.type()), ops_->name(),
                              transposed_ ? fmt::format(", ffn_down_exps transposed at load ({:.1f} MiB, weight NMSE {:.1e})",
                                                        static_cast<double>(transposed_bytes()) / mib,
                                                        transposed_->down_weight_nmse)
                                          : std::string(),
                              repacked_ && repacked_->bytes > 0
                                  ? fmt::format(", repacked for the CPU ({:.1f} MiB: expert up and down rows side by "
                                                "side in {} layers, {} tensors as q4_0x16, {} as q4_0_split)",
                                                static_cast<double>(repacked_->bytes) / mib, repacked_->n_layers,
                                                repacked_->n_q4_0x16, repacked_->n_q4_0_split)
                                  : std::string())}};
}

uint64_t CpuExecutor::transposed_bytes() const {
  uint64_t n = 0;
  if (transposed_) {
    for (const auto& b : transposed_->buffers) n += b.size;
  }
  return n;
}

ExecutorCounters CpuExecutor::counters() const {
  ExecutorCounters c;
  c.tokens = tokens_;
  c.evals = evals_;
  const ForwardOpsCounters o = ops_->counters();
  c.weight_bytes = o.weight_bytes;
  c.expert_bytes = o.expert_bytes;
  return c;
}

void CpuExecutor::reset_counters() {
  tokens_ = 0;
  evals_ = 0;
  ops_->reset_counters();
}

}  // namespace tandem
