#include "runtime/streaming_executor.h"

#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "core/log.h"
#include "cpu/kernel_table.h"
#include "runtime/expert_read_trace.h"
#include "runtime/forward.h"
#include "runtime/forward_ops_fast.h"
#include "runtime/kv_cache.h"
#include "runtime/prefetcher.h"
#include "runtime/streaming_ops.h"

namespace tandem {
namespace {

// The forward pass's single observer: trace marks and the prefetch first (so the reads are
// queued before attention starts), then the user's observer.
class ChainObserver final : public ForwardObserver {
 public:
  ChainObserver(StreamingOps& ops, Prefetcher& prefetcher, std::atomic<uint64_t>& pass)
      : ops_(ops), prefetcher_(prefetcher), pass_(pass) {}
  ForwardObserver* user = nullptr;
  bool prefetch = true;

  void on_routing(uint32_t layer, std::span<const int32_t> positions,
                  std::span<const int32_t> expert_ids, std::span<const float> weights) override {
    if (layer == 0) pass_.fetch_add(1);
    const uint64_t pass = pass_.load();
    ops_.mark_routed(layer, pass);
    prefetcher_.set_pass(pass);
    prefetcher_.on_routing(layer, positions, expert_ids, weights);
    ops_.mark_attention_start(layer);
    if (user != nullptr) user->on_routing(layer, positions, expert_ids, weights);
  }
  void on_expert_gate_activity(uint32_t layer, uint32_t expert, uint64_t n_active,
                               uint64_t n_total) override {
    if (user != nullptr) user->on_expert_gate_activity(layer, expert, n_active, n_total);
  }
  bool wants_gate_neurons() const override { return user != nullptr && user->wants_gate_neurons(); }
  void on_expert_gate_neurons(uint32_t layer, uint32_t expert, std::span<const uint32_t> counts,
                              uint32_t n_rows) override {
    if (user != nullptr) user->on_expert_gate_neurons(layer, expert, counts, n_rows);
  }

 private:
  StreamingOps& ops_;
  Prefetcher& prefetcher_;
  std::atomic<uint64_t>& pass_;
};

// Bytes that stay resident for a configuration: the figure a memory limit is checked against.
uint64_t resident_bytes(const Model& model, const ExpertStoreConfig& c, uint64_t kv,
                        uint64_t reserve, uint64_t slot_bytes) {
  uint64_t expert_ram = 0;
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = model.weights().layers[l];
    const uint64_t one = lw.ffn_gate_exps.nbytes() / c.n_expert +
                         lw.ffn_up_exps.nbytes() / c.n_expert +
                         lw.ffn_down_exps.nbytes() / c.n_expert;
    for (uint32_t e = 0; e < c.n_expert; ++e) {
      if (c.tier({int32_t(l), int32_t(e)}) != StoreTier::stream) expert_ram += one;
    }
  }
  const uint64_t slots =
      c.n_slots_per_layer > 0 ? uint64_t{c.n_slots_per_layer} * c.n_layer : c.n_slots;
  return non_expert_weight_bytes(model.file()) + kv + reserve + expert_ram +
         (slots + c.pinned.size()) * slot_bytes;
}

}  // namespace

struct StreamingExecutor::Impl {
  const Model* model = nullptr;
  StreamingExecutorOptions options;
  // Declared first so that they outlive the cache, whose destructor runs the last callbacks.
  std::unique_ptr<Trace> trace;
  std::atomic<uint64_t> pass{0};
  std::unique_ptr<ExpertReadTrace> read_trace;  // the cache's load hooks (needs trace, pass)

  std::unique_ptr<KvCache> kv;
  std::unique_ptr<ExpertStore> store;
  StreamingOps* ops = nullptr;  // owned by forward
  std::unique_ptr<Forward> forward;
  std::unique_ptr<Prefetcher> prefetcher;
  std::unique_ptr<ChainObserver> chain;

  ExecutorCounters counters;
  ExpertCacheStats cache_base;  // cache stats at the last reset
  uint64_t slot_bytes = 0;
};

StreamingExecutor::StreamingExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StreamingExecutor::~StreamingExecutor() {
  if (!impl_) return;
  // Finish every read (their callbacks add the last "read" spans) before writing the trace.
  impl_->chain.reset();
  impl_->prefetcher.reset();
  impl_->forward.reset();
  impl_->store.reset();
  const Status st = write_trace();
  if (!st.ok()) log_error("{}", st.message());
}

Result<std::unique_ptr<Executor>> make_streaming_executor(const Model& model,
                                                          const StreamingExecutorOptions& options) {
  auto r = make_streaming_executor_typed(model, options);
  if (!r.ok()) return r.status();
  return std::unique_ptr<Executor>(std::move(r).value());
}

Result<std::unique_ptr<StreamingExecutor>> make_streaming_executor_typed(
    const Model& model, const StreamingExecutorOptions& options) {
  const ModelShape& shape = model.shape();
  auto impl = std::make_unique<StreamingExecutor::Impl>();
  impl->model = &model;
  impl->options = options;
  impl->options.store = nullptr;
  impl->options.plan = nullptr;

  KvCacheOptions kvo;
  kvo.n_ctx = options.n_ctx;
  kvo.n_ubatch = options.n_ubatch;
  kvo.type = options.cache_type;
  TANDEM_ASSIGN_OR_RETURN(KvCache kv, KvCache::create(shape, kvo));
  impl->kv = std::make_unique<KvCache>(std::move(kv));
  const uint64_t kv_bytes = impl->kv->size_bytes();

  ExpertStoreConfig config;
  bool from_limit = false;
  if (options.store != nullptr) {
    config = *options.store;
  } else if (options.plan != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(config, make_store_config_from_plan(shape, *options.plan));
  } else if (options.mem_limit > 0) {
    MemLimitInputs in;
    in.mem_limit = options.mem_limit;
    in.kv_bytes = kv_bytes;
    in.reserve_bytes = options.reserve_bytes;
    TANDEM_ASSIGN_OR_RETURN(config, make_store_config_for_mem_limit(model, in));
    from_limit = true;
  } else {
    config = make_store_config_all_ram(shape);
  }
  TANDEM_ASSIGN_OR_RETURN(impl->slot_bytes, expert_slot_bytes(model.file()));
  if (options.mem_limit > 0 && !from_limit) {
    const uint64_t need =
        resident_bytes(model, config, kv_bytes, options.reserve_bytes, impl->slot_bytes);
    if (need > options.mem_limit) {
      return make_error(
          ErrorCode::out_of_memory,
          "--mem-limit {} is too small for this placement: it keeps {} resident (non-expert "
          "weights {}, "
          "KV {}, reserve {}, {} experts in RAM, {} cache slots x {})",
          format_mib(options.mem_limit), format_mib(need),
          format_mib(non_expert_weight_bytes(model.file())), format_mib(kv_bytes),
          format_mib(options.reserve_bytes),
          config.count(StoreTier::ram) + config.count(StoreTier::gpu),
          config.n_slots_per_layer > 0 ? config.n_slots_per_layer * config.n_layer : config.n_slots,
          format_mib(impl->slot_bytes));
    }
  }
  for (const std::string& note : config.notes) log_info("{}", note);

  if (!options.trace.empty() || options.keep_trace_in_memory) {
    impl->trace = std::make_unique<Trace>();
    impl->trace->name_thread("eval");
  }
  ExpertCacheOptions co;
  co.policy = options.policy;
  co.frequency = options.frequency;
  co.io = options.io;
  if (impl->trace) {
    impl->read_trace = std::make_unique<ExpertReadTrace>(*impl->trace, model, impl->pass);
    impl->read_trace->install(co);
  }
  TANDEM_ASSIGN_OR_RETURN(impl->store, ExpertStore::create(model, std::move(config), co));
  if (options.mem_limit > 0 && impl->store->cache() != nullptr) {
    TANDEM_RETURN_IF_ERROR(impl->store->drop_streamed_pages());
  }

  std::unique_ptr<ForwardOps> base =
      options.make_base_ops ? options.make_base_ops() : make_fast_cpu_ops(cpu::kernels());
  if (!base)
    return make_error(ErrorCode::invalid_argument,
                      "streaming executor: make_base_ops returned no ops");
  auto ops = std::make_unique<StreamingOps>(std::move(base), *impl->store, impl->trace.get());
  impl->ops = ops.get();
  ForwardOptions fo;
  fo.n_ubatch = options.n_ubatch;
  fo.n_threads = options.n_threads;
  TANDEM_ASSIGN_OR_RETURN(impl->forward,
                          Forward::create(shape, model.weights(), fo, std::move(ops)));
  impl->prefetcher =
      std::make_unique<Prefetcher>(*impl->store, impl->trace.get(), options.prefetch);
  impl->chain = std::make_unique<ChainObserver>(*impl->ops, *impl->prefetcher, impl->pass);
  impl->forward->set_observer(impl->chain.get());
  if (impl->store->cache() != nullptr) impl->cache_base = impl->store->cache()->stats();
  return std::unique_ptr<StreamingExecutor>(new StreamingExecutor(std::move(impl)));
}

uint32_t StreamingExecutor::n_ctx() const {
  return impl_->kv->n_ctx();
}
uint32_t StreamingExecutor::n_past() const {
  return impl_->kv->n_past();
}
void StreamingExecutor::clear() {
  impl_->kv->clear();
}
Status StreamingExecutor::truncate(uint32_t n) {
  return impl_->kv->truncate(n);
}
void StreamingExecutor::set_observer(ForwardObserver* observer) {
  impl_->chain->user = observer;
}
const ExpertStore& StreamingExecutor::store() const {
  return *impl_->store;
}
StreamingOpsStats StreamingExecutor::ops_stats() const {
  return impl_->ops->stats();
}
PrefetcherStats StreamingExecutor::prefetch_stats() const {
  return impl_->prefetcher->stats();
}
const Trace* StreamingExecutor::trace() const {
  return impl_->trace.get();
}

Status StreamingExecutor::write_trace() const {
  if (!impl_->trace || impl_->options.trace.empty()) return Status::success();
  return impl_->trace->write(impl_->options.trace);
}

Status StreamingExecutor::eval(std::span<const int32_t> tokens, LogitsRows rows,
                               std::vector<float>& logits) {
  Impl& m = *impl_;
  const int64_t t0 = m.trace ? m.trace->now_us() : 0;
  const uint32_t p0 = m.kv->n_past();
  Status st = m.forward->eval(*m.kv, tokens, rows, logits);
  if (st.ok() && !m.prefetcher->status().ok()) st = m.prefetcher->status();
  if (m.trace) {
    m.trace->complete("eval", "eval", t0, m.trace->now_us() - t0,
                      {{"pos", p0}, {"n_tokens", int64_t(tokens.size())}},
                      st.ok() ? std::string() : st.message());
  }
  if (st.ok()) {
    ++m.counters.evals;
    m.counters.tokens += tokens.size();
  }
  return st;
}

std::vector<DeviceMemoryLine> StreamingExecutor::memory_lines() const {
  const Impl& m = *impl_;
  const ExpertStoreConfig& c = m.store->config();
  const uint64_t slots =
      m.store->cache() != nullptr ? m.store->cache()->n_slots() + c.pinned.size() : 0;
  const uint32_t n_ram = c.count(StoreTier::ram) + c.count(StoreTier::gpu);
  std::string detail = fmt::format("non-expert weights {} resident, ",
                                   format_mib(non_expert_weight_bytes(m.model->file())));
  if (n_ram > 0) detail += fmt::format("{} experts from the mapping, ", n_ram);
  detail += fmt::format("expert cache {} slots x {} = {}{}, KV {}", slots, format_mib(m.slot_bytes),
                        format_mib(slots * m.slot_bytes),
                        m.store->cache() != nullptr
                            ? fmt::format(" ({}, {})", m.store->cache()->policy_name(),
                                          m.store->cache()->reader().describe())
                            : std::string(),
                        format_mib(m.kv->size_bytes()));
  return {DeviceMemoryLine{"CPU", detail}};
}

ExecutorCounters StreamingExecutor::counters() const {
  const Impl& m = *impl_;
  ExecutorCounters c = m.counters;
  const ForwardOpsCounters oc = m.ops->counters();
  c.weight_bytes = oc.weight_bytes;
  c.expert_bytes = oc.expert_bytes;
  const PrefetcherStats ps = m.prefetcher->stats();
  c.ram_hits = ps.hits;
  c.ram_misses = ps.misses;
  if (m.store->cache() != nullptr)
    c.storage_bytes = m.store->cache()->stats().bytes_loaded - m.cache_base.bytes_loaded;
  return c;
}

void StreamingExecutor::reset_counters() {
  Impl& m = *impl_;
  m.counters = {};
  m.ops->reset_counters();
  m.prefetcher->reset_stats();
  if (m.store->cache() != nullptr) m.cache_base = m.store->cache()->stats();
}

}  // namespace tandem
