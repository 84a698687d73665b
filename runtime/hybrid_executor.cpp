#include "runtime/hybrid_executor.h"

#include <fmt/format.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#include <vulkan/vulkan.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "core/log.h"
#include "cpu/kernel_table.h"
#include "gpu/ops/get_rows.h"
#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/ops/mul_mat_vec_t_id.h"
#include "gpu/ops/reglu.h"
#include "planner/plan.h"
#include "runtime/expert_read_trace.h"
#include "runtime/expert_store.h"
#include "runtime/forward_ops_fast.h"
#include "runtime/gpu_expert_slots.h"
#include "runtime/gpu_executor_state.h"
#include "runtime/prefetcher.h"
#include "runtime/streaming_ops.h"
#include "runtime/trace.h"

namespace tandem {
namespace {

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

Status with_context(Status s, std::string_view what) {
  if (s.ok()) return s;
  return Status(s.code(), fmt::format("{}: {}", what, s.message()));
}

// One layer's GPU experts: gate/up/down slabs back to back in the model's per-expert layout
// (ggml ne order, ne2 = n + n_dynamic): the pinned experts at compact indices [0, n), the
// dynamic slots at [n, n + n_dynamic) (GpuExpertSlots slot j = compact index n + j).
struct GpuExperts {
  std::vector<int32_t> slot;      // (n_expert): compact index of a pinned expert or -1
  std::vector<uint8_t> dynamic;   // (n_expert): 1 for a plan's gpu (dynamic) expert
  uint32_t n = 0;                 // pinned
  uint32_t n_dynamic = 0;         // dynamic slots
  gpu::Buffer gate, up, down;
};

// One expert copy into a dynamic slot, issued at routing.
struct SlotUpload {
  int32_t expert = 0;
  uint32_t compact = 0;  // destination compact index
};

}  // namespace

struct HybridExecutor::Impl {
  const Model* model = nullptr;
  HybridExecutorOptions options;
  std::unique_ptr<Trace> trace;  // declared before the store: its read callbacks write spans
  std::atomic<uint64_t> pass{0};
  std::unique_ptr<ExpertReadTrace> read_trace;  // the cache's load hooks (needs trace, pass)

  GpuGraph g;  // attention, norms, KV cache, output head; its buffers are freed before the device
  std::vector<GpuExperts> experts;  // per layer
  uint64_t gpu_expert_bytes = 0;    // pinned experts + dynamic slots (device memory)
  uint64_t gpu_slot_bytes = 0;      // of which dynamic slots
  std::unique_ptr<GpuExpertSlots> slots;  // null when no layer has a dynamic slot
  // Dynamic uploads on a discrete device (or wherever a slot buffer is not host-visible): its
  // own ring, sized so that one layer's uploads never wait for a ring slot (see create()).
  std::unique_ptr<gpu::StagingRing> upload_ring;
  uint64_t upload_ring_bytes = 0;
  std::vector<SlotUpload> uploads;       // this layer's, built while splitting the pairs
  std::vector<SlotUpload> task_uploads;  // the memcpy task's copy (untouched until joined)
  tbb::task_group upload_tasks;          // unified memory: the memcpy of this layer's uploads
  bool upload_task_running = false;
  uint64_t ring_value = 0;               // the ring's value this layer's B waits on (0: none)
  std::function<void(uint32_t, int32_t, uint64_t)> upload_hook;
  std::unique_ptr<gpu::CommandRecorder> moe_rec;  // submission B
  gpu::Buffer pair_rows, pair_slots;  // (n_ub * n_expert_used) i32, host-written
  gpu::Buffer pair_out;               // (n_ub * n_expert_used, n_embd) f32, readback

  std::unique_ptr<ExpertStore> store;
  std::unique_ptr<StreamingOps> ops;
  std::unique_ptr<Prefetcher> prefetcher;
  std::unique_ptr<tbb::task_arena> arena;

  uint32_t n_past = 0;
  ForwardObserver* observer = nullptr;
  std::function<void(uint32_t)> submit_hook;
  ExecutorCounters counters;
  ExpertCacheStats cache_base;

  // Scratch (math order).
  std::vector<int32_t> ids, pos, g_rows, g_slots, c_ids, pair_of;  // pair_of: (m, k) -> index
  std::vector<uint8_t> on_gpu;                                        // (m, k)
  std::vector<float> weights, router_logits, xc, yc, ones, yg, moe_out;
  std::vector<uint64_t> gate_active;

  ~Impl() {
    join_uploads();
    if (g.device) vkDeviceWaitIdle(g.device->handle());
  }

  Status create_experts(const std::vector<std::vector<bool>>& pinned, const std::vector<std::vector<bool>>& dynamic,
                        uint32_t n_dynamic_slots);
  Status issue_uploads(uint32_t il);
  void join_uploads();
  Status eval_ubatch(std::span<const int32_t> tokens, const GpuUbatch& ub, float* logits);
  Status run_layer(uint32_t il, const GpuUbatch& ub);
  Status wait(gpu::CommandRecorder& rec, uint32_t layer, const char* what);
  void route(uint32_t il, int64_t m, const int32_t* positions);
};

HybridExecutor::HybridExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HybridExecutor::~HybridExecutor() {
  if (!impl_) return;
  impl_->prefetcher.reset();
  impl_->ops.reset();
  impl_->store.reset();  // finishes reads in flight (their spans) before the trace is written
  if (impl_->trace && !impl_->options.trace.empty()) {
    const Status st = impl_->trace->write(impl_->options.trace);
    if (!st.ok()) log_error("{}", st.message());
  }
}

Status HybridExecutor::Impl::create_experts(const std::vector<std::vector<bool>>& pinned,
                                            const std::vector<std::vector<bool>>& dynamic,
                                            uint32_t n_dynamic_slots) {
  const ModelShape& sh = model->shape();
  const gpu::Device& dev = *g.device;
  if (!dev.unified() && !g.staging) {
    TANDEM_ASSIGN_OR_RETURN(g.staging, gpu::StagingRing::create(dev));
  }
  experts.resize(sh.n_layer);
  std::vector<uint32_t> n_slots(sh.n_layer, 0);
  uint64_t pinned_bytes = 0, max_matrix = 0;
  bool ring_needed = false;
  for (uint32_t il = 0; il < sh.n_layer; ++il) {
    const LayerWeights& L = model->weights().layers[il];
    GpuExperts& ge = experts[il];
    ge.slot.assign(sh.n_expert, -1);
    ge.dynamic.assign(sh.n_expert, 0);
    uint32_t n_dyn = 0;
    for (uint32_t e = 0; e < sh.n_expert; ++e) {
      if (pinned[il][e]) ge.slot[e] = static_cast<int32_t>(ge.n++);
      if (dynamic[il][e]) {
        ge.dynamic[e] = 1;
        ++n_dyn;
      }
    }
    // More slots than dynamic experts would never be filled.
    ge.n_dynamic = std::min(n_dynamic_slots, n_dyn);
    n_slots[il] = ge.n_dynamic;
    const uint32_t n_all = ge.n + ge.n_dynamic;
    if (n_all == 0) continue;
    for (auto [t, buf] : {std::pair{&L.ffn_gate_exps, &ge.gate}, {&L.ffn_up_exps, &ge.up},
                          {&L.ffn_down_exps, &ge.down}}) {
      const uint64_t per = t->nb[2];
      auto b = gpu::Buffer::create(dev, per * n_all, gpu::MemoryIntent::device_weights,
                                   fmt::format("{} ({} pinned + {} dynamic GPU experts)", t->name, ge.n,
                                               ge.n_dynamic));
      if (!b.ok()) {
        return with_context(b.status(), fmt::format("GPU experts of layer {} ({} pinned + {} dynamic slots, x {})",
                                                    il, ge.n, ge.n_dynamic, mib(per)));
      }
      *buf = std::move(b).value();
      for (uint32_t e = 0; e < sh.n_expert; ++e) {
        if (ge.slot[e] < 0) continue;
        const auto* src = static_cast<const uint8_t*>(t->data) + per * e;
        const uint64_t dst = per * static_cast<uint64_t>(ge.slot[e]);
        if (buf->host_data() != nullptr) {
          std::memcpy(static_cast<uint8_t*>(buf->host_data()) + dst, src, per);
        } else {
          TANDEM_RETURN_IF_ERROR(g.staging->upload(buf->slice(dst, per), src, per));
        }
      }
      pinned_bytes += per * ge.n;
      gpu_expert_bytes += per * n_all;
      gpu_slot_bytes += per * ge.n_dynamic;
      if (ge.n_dynamic > 0) {
        max_matrix = std::max(max_matrix, per);
        ring_needed = ring_needed || !dev.unified() || buf->host_data() == nullptr;
      }
    }
  }
  if (g.staging) TANDEM_RETURN_IF_ERROR(g.staging->wait_idle());
  counters.upload_bytes += pinned_bytes;

  const uint32_t max_slots = *std::max_element(n_slots.begin(), n_slots.end());
  if (max_slots == 0) return Status::success();
  TANDEM_ASSIGN_OR_RETURN(slots, GpuExpertSlots::create(sh.n_layer, sh.n_expert, std::move(n_slots),
                                                        options.policy, options.frequency));
  if (ring_needed) {
    // One ring slot per matrix of every upload a layer can issue (3 x its dynamic slots): a
    // layer's uploads never recycle a ring slot, and the previous layer's copies are complete
    // (its submission B waited for them and the host for B), so upload() never blocks. Capped
    // at 256 MiB of host memory; past that an upload may wait for the ring's oldest copy.
    const uint64_t ring_slot = (max_matrix + 255) / 256 * 256;
    const uint64_t cap = std::max<uint64_t>(4, (256ull << 20) / ring_slot);
    const auto n_ring = static_cast<uint32_t>(std::min<uint64_t>(uint64_t{3} * max_slots, cap));
    TANDEM_ASSIGN_OR_RETURN(upload_ring, gpu::StagingRing::create(dev, ring_slot * n_ring, n_ring));
    upload_ring_bytes = ring_slot * n_ring;
  }
  return Status::success();
}

void HybridExecutor::Impl::join_uploads() {
  if (!upload_task_running) return;
  upload_tasks.wait();
  upload_task_running = false;
}

Status HybridExecutor::Impl::issue_uploads(uint32_t il) {
  ring_value = 0;
  if (uploads.empty()) return Status::success();
  const LayerWeights& L = model->weights().layers[il];
  const GpuExperts& ge = experts[il];
  const std::pair<const TensorView*, const gpu::Buffer*> mats[] = {
      {&L.ffn_gate_exps, &ge.gate}, {&L.ffn_up_exps, &ge.up}, {&L.ffn_down_exps, &ge.down}};
  const uint64_t bytes = L.ffn_gate_exps.nb[2] + L.ffn_up_exps.nb[2] + L.ffn_down_exps.nb[2];
  const auto span = [this, il, bytes](int64_t t0, const SlotUpload& u, const char* how) {
    trace->complete("gpu_upload", "upload", t0, trace->now_us() - t0,
                    {{"layer", int64_t(il)},
                     {"expert", int64_t(u.expert)},
                     {"bytes", int64_t(bytes)},
                     {"slot", int64_t(u.compact)},
                     {"pass", int64_t(pass.load())}},
                    how);
  };
  for (const SlotUpload& u : uploads) {
    counters.upload_bytes += bytes;
    if (upload_hook) upload_hook(il, u.expert, bytes);
  }
  if (upload_ring) {
    // Queued on the ring's queue now, before attention is submitted; submission B waits on
    // the ring's timeline value, so the copies overlap attention with no host wait.
    for (const SlotUpload& u : uploads) {
      const int64_t t0 = trace ? trace->now_us() : 0;
      for (const auto& [t, buf] : mats) {
        const uint64_t per = t->nb[2];
        const auto* src = static_cast<const uint8_t*>(t->data) + per * static_cast<uint64_t>(u.expert);
        Status st = upload_ring->upload(buf->slice(per * u.compact, per), src, per);
        if (!st.ok()) {
          for (const SlotUpload& v : uploads) slots->drop(il, v.expert);
          return with_context(st, fmt::format("upload of layer {} expert {} into GPU slot {} ({})", il, u.expert,
                                              u.compact, t->name));
        }
      }
      if (trace) span(t0, u, "staging ring");
    }
    ring_value = upload_ring->last_value();
    return Status::success();
  }
  // Unified memory: the slot buffers are host-visible; a worker copies from the mapping (page
  // faults included) while the GPU runs attention, and the eval thread joins it before
  // submission B (whose queue submission makes the host writes visible to the device).
  task_uploads = uploads;
  upload_task_running = true;
  upload_tasks.run([this, mats, span] {
    for (const SlotUpload& u : task_uploads) {
      const int64_t t0 = trace ? trace->now_us() : 0;
      for (const auto& [t, buf] : mats) {
        const uint64_t per = t->nb[2];
        std::memcpy(static_cast<uint8_t*>(buf->host_data()) + per * u.compact,
                    static_cast<const uint8_t*>(t->data) + per * static_cast<uint64_t>(u.expert), per);
      }
      if (trace) span(t0, u, "memcpy");
    }
  });
  return Status::success();
}

Result<std::unique_ptr<HybridExecutor>> HybridExecutor::create(const Model& model,
                                                               const HybridExecutorOptions& options) {
  const ModelShape& sh = model.shape();
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.model = &model;
  m.options = options;
  m.options.plan = nullptr;

  GpuExecutorOptions go;
  go.device = options.device;
  go.n_ctx = options.n_ctx;
  go.n_ubatch = options.n_ubatch;
  go.cache_type = options.cache_type;
  GpuGraphConfig gc;
  gc.bind_experts = false;
  gc.host_activations = true;
  TANDEM_RETURN_IF_ERROR(m.g.init(model, go, gc));
  const gpu::Device& dev = *m.g.device;

  // Tiers.
  ExpertStoreConfig config;
  std::vector<std::vector<bool>> gpu_tier(sh.n_layer, std::vector<bool>(sh.n_expert, false));
  std::vector<std::vector<bool>> dynamic_tier(sh.n_layer, std::vector<bool>(sh.n_expert, false));
  uint32_t n_dynamic_slots = 0;
  if (options.plan != nullptr) {
    const Plan& plan = *options.plan;
    TANDEM_ASSIGN_OR_RETURN(config, make_store_config_from_plan(sh, plan));
    config.notes.clear();  // they describe the CPU path's handling of GPU tiers
    uint32_t n_dynamic = 0;
    for (uint32_t l = 0; l < sh.n_layer; ++l) {
      for (uint32_t e = 0; e < sh.n_expert; ++e) {
        const ExpertTier t = plan.placement.tiers[l][e];
        gpu_tier[l][e] = t == ExpertTier::gpu_pinned;
        dynamic_tier[l][e] = t == ExpertTier::gpu_dynamic;
        n_dynamic += t == ExpertTier::gpu_dynamic ? 1 : 0;
      }
    }
    n_dynamic_slots = plan.placement.n_dynamic_slots;
    if (n_dynamic > 0) {
      log_info("hybrid: {} gpu (dynamic) experts share {} GPU slots per layer ({} policy){}", n_dynamic,
               n_dynamic_slots, options.policy == CachePolicyKind::lru ? "lru" : "frequency",
               n_dynamic_slots == 0 ? ": with no slot they run on the CPU from the mapping" : "");
    }
    if (plan.placement.attention == Device::cpu || plan.placement.output_head == Device::cpu) {
      log_info("hybrid: the plan puts attention/output head on the CPU; this executor runs them on the GPU");
    }
  } else if (options.mem_limit > 0) {
    MemLimitInputs in;
    in.mem_limit = options.mem_limit;
    in.kv_bytes = 0;
    in.reserve_bytes = 64ull << 20;
    TANDEM_ASSIGN_OR_RETURN(config, make_store_config_for_mem_limit(model, in));
  } else {
    config = make_store_config_all_ram(sh);
    uint64_t all = 0;
    for (const auto& L : model.weights().layers) {
      all += L.ffn_gate_exps.nbytes() + L.ffn_up_exps.nbytes() + L.ffn_down_exps.nbytes();
    }
    const uint64_t budget = dev.caps().device_local_bytes() / 2;
    const uint32_t per_layer =
        all <= budget ? sh.n_expert
                      : static_cast<uint32_t>(static_cast<double>(budget) / static_cast<double>(all) *
                                              sh.n_expert);
    for (uint32_t l = 0; l < sh.n_layer; ++l) {
      for (uint32_t e = 0; e < per_layer; ++e) {
        gpu_tier[l][e] = true;
        config.tiers[size_t(l) * sh.n_expert + e] = StoreTier::gpu;
      }
    }
    log_info("hybrid: no plan: {} of {} experts per layer on the GPU (experts {} of {} device-local)",
             per_layer, sh.n_expert, mib(all), mib(dev.caps().device_local_bytes()));
  }
  TANDEM_RETURN_IF_ERROR(m.create_experts(gpu_tier, dynamic_tier, n_dynamic_slots));
  m.counters.upload_bytes += m.g.staged_bytes;

  // Pair buffers for n_ub rows.
  const uint64_t pairs = uint64_t{m.g.n_ub} * sh.n_expert_used;
  for (auto [buf, bytes, intent, name] :
       {std::tuple{&m.pair_rows, pairs * 4, gpu::MemoryIntent::shared, "GPU pair rows"},
        {&m.pair_slots, pairs * 4, gpu::MemoryIntent::shared, "GPU pair slots"},
        {&m.pair_out, pairs * sh.n_embd * 4, gpu::MemoryIntent::readback, "GPU pair outputs"}}) {
    auto b = gpu::Buffer::create(dev, bytes, intent, name);
    if (!b.ok()) return with_context(b.status(), fmt::format("scratch '{}' ({})", name, mib(bytes)));
    *buf = std::move(b).value();
    m.g.scratch_bytes += buf->size();
  }
  TANDEM_ASSIGN_OR_RETURN(m.moe_rec, gpu::CommandRecorder::create(dev, *m.g.pipelines));

  // CPU side: the streaming ops over the fast ops, the prefetcher, the trace.
  if (!options.trace.empty()) {
    m.trace = std::make_unique<Trace>();
    m.trace->name_thread("eval");
  }
  ExpertCacheOptions co;
  co.policy = options.policy;
  co.frequency = options.frequency;
  if (m.trace) {
    m.read_trace = std::make_unique<ExpertReadTrace>(*m.trace, model, m.pass);
    m.read_trace->install(co);
  }
  TANDEM_ASSIGN_OR_RETURN(m.store, ExpertStore::create(model, std::move(config), co));
  if (options.mem_limit > 0 && m.store->cache() != nullptr) {
    TANDEM_RETURN_IF_ERROR(m.store->drop_streamed_pages());
  }
  m.ops = std::make_unique<StreamingOps>(
      options.make_base_ops ? options.make_base_ops() : make_fast_cpu_ops(cpu::kernels()), *m.store, m.trace.get());
  m.prefetcher = std::make_unique<Prefetcher>(*m.store, m.trace.get());
  // int{} reads the constant's value (a ternary of two lvalues would odr-use it, and libtbb
  // exports no definition).
  const int n_threads = options.n_threads > 0 ? options.n_threads : int{tbb::task_arena::automatic};
  m.arena = std::make_unique<tbb::task_arena>(n_threads);
  if (m.store->cache() != nullptr) m.cache_base = m.store->cache()->stats();
  return std::unique_ptr<HybridExecutor>(new HybridExecutor(std::move(impl)));
}

uint32_t HybridExecutor::n_ctx() const {
  return impl_->options.n_ctx;
}
uint32_t HybridExecutor::n_past() const {
  return impl_->n_past;
}
void HybridExecutor::clear() {
  impl_->n_past = 0;
}
Status HybridExecutor::truncate(uint32_t n) {
  if (n > impl_->n_past) {
    return make_error(ErrorCode::invalid_argument,
                      "cannot truncate the KV cache to {} positions: it holds {}", n, impl_->n_past);
  }
  impl_->n_past = n;  // the GPU cache holds every position in its own cell (as GpuExecutor)
  return Status::success();
}
void HybridExecutor::set_observer(ForwardObserver* observer) {
  impl_->observer = observer;
}
void HybridExecutor::set_attention_submit_hook(std::function<void(uint32_t)> hook) {
  impl_->submit_hook = std::move(hook);
}
void HybridExecutor::set_upload_hook(std::function<void(uint32_t, int32_t, uint64_t)> hook) {
  impl_->upload_hook = std::move(hook);
}

Status HybridExecutor::eval(std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) {
  Impl& m = *impl_;
  const ModelShape& sh = m.model->shape();
  if (tokens.empty()) return make_error(ErrorCode::invalid_argument, "no tokens to evaluate");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= sh.n_vocab) {
      return make_error(ErrorCode::invalid_argument, "token {} (at index {}) is outside the vocabulary [0, {})",
                        tokens[i], i, sh.n_vocab);
    }
  }
  if (uint64_t{m.n_past} + tokens.size() > m.options.n_ctx) {
    return make_error(ErrorCode::invalid_argument, "{} cached + {} new tokens exceeds the context of {} (-c)",
                      m.n_past, tokens.size(), m.options.n_ctx);
  }
  const bool all = rows == LogitsRows::all;
  const size_t nv = sh.n_vocab;
  logits.assign((all ? tokens.size() : 1) * nv, 0.0f);
  ++m.counters.evals;
  Status status;
  m.arena->execute([&] {
    for (size_t b = 0; b < tokens.size(); b += m.g.n_ub) {
      const size_t n = std::min<size_t>(m.g.n_ub, tokens.size() - b);
      GpuUbatch ub;
      ub.n_tokens = static_cast<int64_t>(n);
      ub.p0 = m.n_past;
      ub.want_logits = all || b + n == tokens.size();
      ub.all_rows = all;
      status = m.eval_ubatch(tokens.subspan(b, n), ub, all ? logits.data() + b * nv : logits.data());
      if (!status.ok()) return;
      m.n_past += static_cast<uint32_t>(n);
      m.counters.tokens += n;
    }
  });
  return status;
}

Status HybridExecutor::Impl::wait(gpu::CommandRecorder& rec, uint32_t layer, const char* what) {
  const int64_t t0 = trace ? trace->now_us() : 0;
  Status st = rec.wait();
  if (trace) {
    trace->complete("gpu_wait", "wait", t0, trace->now_us() - t0,
                    {{"layer", int64_t(layer)}, {"pass", int64_t(pass.load())}}, what);
  }
  return st;
}

void HybridExecutor::Impl::route(uint32_t il, int64_t m, const int32_t* positions) {
  const ModelShape& sh = model->shape();
  const int64_t ne = sh.n_expert, k = sh.n_expert_used;
  ids.resize(static_cast<size_t>(m * k));
  weights.resize(static_cast<size_t>(m * k));
  for (int64_t i = 0; i < m; ++i) {
    route_row(sh.gating, router_logits.data() + i * ne, ne, k, ids.data() + i * k, weights.data() + i * k);
  }
  if (il == 0) pass.fetch_add(1);
  ops->mark_routed(il, pass.load());
  prefetcher->set_pass(pass.load());
  const std::span<const int32_t> ps(positions, static_cast<size_t>(m));
  prefetcher->on_routing(il, ps, ids, weights);
  ops->mark_attention_start(il);
  if (observer != nullptr) observer->on_routing(il, ps, ids, weights);
}

Status HybridExecutor::Impl::eval_ubatch(std::span<const int32_t> tokens, const GpuUbatch& ub, float* logits) {
  const ModelShape& sh = model->shape();
  const ModelWeights& W = model->weights();
  const int64_t t_n = ub.n_tokens;
  pos.resize(static_cast<size_t>(t_n));
  for (int64_t t = 0; t < t_n; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(ub.p0 + t);
  TANDEM_RETURN_IF_ERROR(g.pos.write(pos.data(), static_cast<uint64_t>(t_n) * 4));
  const int64_t tail = ub.last_r0();
  if (tail > 0 && tail < t_n) {
    TANDEM_RETURN_IF_ERROR(g.pos_rows.write(pos.data() + tail, static_cast<uint64_t>(t_n - tail) * 4));
  }
  counters.upload_bytes += static_cast<uint64_t>(t_n) * 8;
  // The embedding goes straight into the shared residual buffer.
  auto* x = static_cast<float*>(g.x.host_data());
  if (x == nullptr) return make_error(ErrorCode::internal, "hybrid: x is not host-visible");
  TANDEM_RETURN_IF_ERROR(ops->get_rows(W.token_embd, tokens.data(), t_n, x));

  for (uint32_t il = 0; il < sh.n_layer; ++il) TANDEM_RETURN_IF_ERROR(run_layer(il, ub));

  uint64_t gpu_dense = 0;
  for (uint32_t il = 0; il < sh.n_layer; ++il) {
    const LayerWeights& L = W.layers[il];
    const bool last = il + 1 == sh.n_layer;
    gpu_dense += L.attn_norm.nbytes() + L.attn_k.nbytes() + L.attn_v.nbytes();
    if (!last || t_n - ub.last_r0() > 0) {
      gpu_dense += L.attn_q.nbytes() + L.attn_output.nbytes() + L.ffn_norm.nbytes();
    }
  }
  if (ub.want_logits) {
    TANDEM_RETURN_IF_ERROR(g.rec->begin());
    GpuGraphParts head;
    head.embed = false;
    head.layer_end = 0;
    head.router = head.moe = false;
    Status st = g.record_ubatch(*g.rec, ub, false, head);
    if (!st.ok()) {
      (void)g.rec->submit();
      (void)g.rec->wait();
      return st;
    }
    TANDEM_RETURN_IF_ERROR(g.rec->submit().status());
    TANDEM_RETURN_IF_ERROR(wait(*g.rec, sh.n_layer, "output head"));
    ++counters.syncs;
    const size_t out_rows = ub.all_rows ? static_cast<size_t>(t_n) : 1;
    TANDEM_RETURN_IF_ERROR(g.logits_rb.read(logits, out_rows * sh.n_vocab * 4));
    gpu_dense += W.output_norm.nbytes() + W.output.nbytes();
  }
  counters.weight_bytes += gpu_dense;
  return Status::success();
}

Status HybridExecutor::Impl::run_layer(uint32_t il, const GpuUbatch& ub) {
  const ModelShape& sh = model->shape();
  const LayerWeights& L = model->weights().layers[il];
  const int64_t d = sh.n_embd, k = sh.n_expert_used, nff = sh.n_ff_exp;
  const bool last = il + 1 == sh.n_layer;
  const int64_t r0 = last ? ub.last_r0() : 0;
  const int64_t m = ub.n_tokens - r0;
  auto* x = static_cast<float*>(g.x.host_data());
  const GpuExperts& ge = experts[il];

  // 1. Router on the raw layer input (spec §2.2), published before attention is submitted.
  int64_t n_gpu = 0, n_cpu = 0;
  uploads.clear();
  if (m > 0) {
    router_logits.resize(static_cast<size_t>(m * sh.n_expert));
    TANDEM_RETURN_IF_ERROR(ops->mul_mat(L.ffn_gate_inp, x + r0 * d, m, router_logits.data()));
    route(il, m, pos.data() + r0);
    TANDEM_RETURN_IF_ERROR(prefetcher->status());
    // 2. Split the pairs.
    g_rows.clear();
    g_slots.clear();
    c_ids.clear();
    on_gpu.assign(static_cast<size_t>(m * k), 0);
    pair_of.assign(static_cast<size_t>(m * k), 0);
    if (ge.n_dynamic > 0) {
      // Resident experts this ubatch routes to keep their slots, whatever the pair order.
      slots->begin_batch(il);
      for (const int32_t e : ids) {
        if (ge.dynamic[static_cast<size_t>(e)] != 0) slots->protect(il, e);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t s = 0; s < k; ++s) {
        const size_t p = static_cast<size_t>(i * k + s);
        const int32_t e = ids[p];
        int32_t slot = ge.slot[static_cast<size_t>(e)];
        bool hit = slot >= 0;
        if (ge.dynamic[static_cast<size_t>(e)] != 0) {
          // A dynamic expert: resident, or a slot to upload into now, or (every slot taken by
          // this batch, or none at all) the CPU computes it from the mapping.
          const GpuSlotLookup r = ge.n_dynamic > 0 ? slots->use(il, e) : GpuSlotLookup{};
          if (r.slot >= 0) slot = static_cast<int32_t>(ge.n) + r.slot;
          if (r.upload) uploads.push_back(SlotUpload{e, static_cast<uint32_t>(slot)});
          hit = r.hit;
          if (!hit) ++counters.gpu_misses;
        }
        if (slot >= 0) {
          if (hit) ++counters.gpu_hits;
          on_gpu[p] = 1;
          pair_of[p] = static_cast<int32_t>(g_rows.size());
          g_rows.push_back(static_cast<int32_t>(i));
          g_slots.push_back(slot);
        } else {
          pair_of[p] = static_cast<int32_t>(c_ids.size());
          c_ids.push_back(e);
        }
      }
    }
    n_gpu = static_cast<int64_t>(g_rows.size());
    n_cpu = static_cast<int64_t>(c_ids.size());
    if (n_gpu > 0) {
      TANDEM_RETURN_IF_ERROR(pair_rows.write(g_rows.data(), static_cast<uint64_t>(n_gpu) * 4));
      TANDEM_RETURN_IF_ERROR(pair_slots.write(g_slots.data(), static_cast<uint64_t>(n_gpu) * 4));
      counters.upload_bytes += static_cast<uint64_t>(n_gpu) * 8;
    }
  }
  // The dynamic misses' uploads start before attention is submitted; every return below joins
  // the memcpy task (it writes slot buffers that must outlive it).
  TANDEM_RETURN_IF_ERROR(issue_uploads(il));
  struct JoinUploads {
    Impl* impl;
    ~JoinUploads() { impl->join_uploads(); }
  } join_guard{this};

  // 3. Submission A: attention .. ffn_norm.
  if (submit_hook) submit_hook(il);
  TANDEM_RETURN_IF_ERROR(g.rec->begin());
  GpuGraphParts parts;
  parts.embed = false;
  parts.layer_begin = il;
  parts.layer_end = il + 1;
  parts.router = parts.moe = parts.head = false;
  if (Status st = g.record_ubatch(*g.rec, ub, false, parts); !st.ok()) {
    (void)g.rec->submit();
    (void)g.rec->wait();
    return st;
  }
  TANDEM_ASSIGN_OR_RETURN(const uint64_t a_done, g.rec->submit());
  if (m == 0) {
    TANDEM_RETURN_IF_ERROR(wait(*g.rec, il, "attention (K/V only)"));
    ++counters.syncs;
    return Status::success();
  }

  // Submission B: the GPU pairs' experts, after A (they read f).
  if (n_gpu > 0) {
    gpu::CommandRecorder& r = *moe_rec;
    TANDEM_RETURN_IF_ERROR(r.begin());
    const gpu::BufferSlice rows_s = pair_rows.slice(0, static_cast<uint64_t>(n_gpu) * 4);
    const gpu::BufferSlice slots_s = pair_slots.slice(0, static_cast<uint64_t>(n_gpu) * 4);
    const gpu::BufferSlice xg = g.expert_out.slice(0, static_cast<uint64_t>(n_gpu * d) * 4);
    const gpu::BufferSlice gs = g.gate.slice(0, static_cast<uint64_t>(n_gpu * nff) * 4);
    const gpu::BufferSlice us = g.up.slice(0, static_cast<uint64_t>(n_gpu * nff) * 4);
    const gpu::BufferSlice ys = pair_out.slice(0, static_cast<uint64_t>(n_gpu * d) * 4);
    const gpu::BufferSlice fs = g.f.slice(0, static_cast<uint64_t>(m * d) * 4);
    const int64_t ne = ge.n + ge.n_dynamic;  // compact experts: pinned, then dynamic slots
    Status st = [&]() -> Status {
      TANDEM_RETURN_IF_ERROR(gpu::ops::get_rows(r, DType::f32, fs, d, m, rows_s, n_gpu, xg));
      TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(r, L.ffn_gate_exps.dtype, ge.gate.slice(), d, nff, ne,
                                                      slots_s, n_gpu, xg, false, gs));
      // ReLU-sparse up: rows with gate <= 0 are 0 and unread; reglu gives 0 there either way.
      gpu::ops::MulMatVecIdOptions uo;
      uo.skip_if_gate_le_zero = gs;
      TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(r, L.ffn_up_exps.dtype, ge.up.slice(), d, nff, ne, slots_s,
                                                      n_gpu, xg, false, us, uo));
      TANDEM_RETURN_IF_ERROR(gpu::ops::reglu(r, gs, us, n_gpu * nff, gs));
      if (sh.down_layout == DownLayout::transposed) {
        return gpu::ops::mul_mat_vec_t_id(r, L.ffn_down_exps.dtype, ge.down.slice(), d, nff, ne, slots_s, n_gpu,
                                          gs, ys);
      }
      return gpu::ops::mul_mat_vec_id(r, L.ffn_down_exps.dtype, ge.down.slice(), nff, d, ne, slots_s, n_gpu, gs,
                                      false, ys);
    }();
    if (!st.ok()) {
      (void)r.submit();
      (void)r.wait();
      (void)g.rec->wait();
      return st;
    }
    // B reads the dynamic slots: after the memcpy task (host writes, made visible by the
    // submission) or after the ring's copies (its timeline value), and after A.
    join_uploads();
    gpu::TimelineWait waits[2] = {{&g.rec->semaphore(), a_done}, {}};
    size_t n_waits = 1;
    if (ring_value > 0) waits[n_waits++] = {&upload_ring->semaphore(), ring_value};
    TANDEM_RETURN_IF_ERROR(r.submit(std::span<const gpu::TimelineWait>(waits, n_waits)).status());
    const uint64_t per = L.ffn_gate_exps.nb[2] + L.ffn_up_exps.nb[2] + L.ffn_down_exps.nb[2];
    counters.weight_bytes += static_cast<uint64_t>(n_gpu) * per;
    counters.expert_bytes += static_cast<uint64_t>(n_gpu) * per;
  }

  // 4. The CPU pairs, while B runs.
  const auto* f = static_cast<const float*>(g.f.host_data());
  if (n_cpu > 0) {
    TANDEM_RETURN_IF_ERROR(wait(*g.rec, il, "attention"));
    xc.resize(static_cast<size_t>(n_cpu * d));
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t s = 0; s < k; ++s) {
        const size_t p = static_cast<size_t>(i * k + s);
        if (on_gpu[p] == 0) std::copy_n(f + i * d, d, xc.data() + static_cast<int64_t>(pair_of[p]) * d);
      }
    }
    if (static_cast<int64_t>(ones.size()) < n_cpu) ones.assign(static_cast<size_t>(n_cpu), 1.0f);
    MoeArgs a;
    a.gate_exps = &L.ffn_gate_exps;
    a.up_exps = &L.ffn_up_exps;
    a.down_exps = &L.ffn_down_exps;
    a.down_layout = sh.down_layout;
    a.n_embd = d;
    a.n_ff_exp = nff;
    a.n_expert = sh.n_expert;
    a.n_expert_used = 1;
    a.x = xc.data();
    a.expert_ids = c_ids.data();
    a.weights = ones.data();
    a.n_rows = n_cpu;
    yc.resize(static_cast<size_t>(n_cpu * d));
    gate_active.assign(sh.n_expert, 0);
    Status st = ops->moe(a, yc.data(), gate_active);
    if (!st.ok()) {
      if (n_gpu > 0) (void)moe_rec->wait();
      return st;
    }
  }
  if (n_gpu > 0) {
    TANDEM_RETURN_IF_ERROR(wait(*moe_rec, il, "GPU experts"));
    yg.resize(static_cast<size_t>(n_gpu * d));
    TANDEM_RETURN_IF_ERROR(pair_out.read(yg.data(), static_cast<uint64_t>(n_gpu * d) * 4));
  } else if (n_cpu == 0) {
    TANDEM_RETURN_IF_ERROR(wait(*g.rec, il, "attention"));
  }
  ++counters.syncs;

  // Join in slot order, then the residual add (the CPU path's moe + add).
  moe_out.resize(static_cast<size_t>(d));
  for (int64_t i = 0; i < m; ++i) {
    float* oi = moe_out.data();
    for (int64_t s = 0; s < k; ++s) {
      const size_t p = static_cast<size_t>(i * k + s);
      const float wt = weights[p];
      const float* y = (on_gpu[p] != 0 ? yg.data() : yc.data()) + static_cast<int64_t>(pair_of[p]) * d;
      if (s == 0) {
        for (int64_t c = 0; c < d; ++c) oi[c] = wt * y[c];
      } else {
        for (int64_t c = 0; c < d; ++c) oi[c] += wt * y[c];
      }
    }
    float* xi = x + (r0 + i) * d;
    for (int64_t c = 0; c < d; ++c) xi[c] = xi[c] + oi[c];
  }
  return Status::success();
}

std::vector<DeviceMemoryLine> HybridExecutor::memory_lines() const {
  const Impl& m = *impl_;
  const ModelShape& sh = m.model->shape();
  std::map<std::string, uint64_t> by;
  for (const auto& w : m.g.weights) by[gpu::weight_placement_name(w.placement)] += w.buffer.size();
  std::string how;
  for (const auto& [k, v] : by) how += fmt::format("{}{} {}", how.empty() ? "" : ", ", k, mib(v));
  const uint32_t total = sh.n_layer * sh.n_expert;
  const ExpertStoreConfig& c = m.store->config();
  const uint32_t slots = c.n_slots_per_layer > 0 ? c.n_slots_per_layer * c.n_layer : c.n_slots;
  uint32_t n_pinned = 0;
  for (const auto& ge : m.experts) n_pinned += ge.n;
  const std::string dynamic =
      m.slots == nullptr
          ? std::string()
          : fmt::format(", dynamic slots {} ({}, {} policy, {}{})", m.slots->total_slots(), mib(m.gpu_slot_bytes),
                        m.slots->policy_name(), m.upload_ring ? "uploaded through a staging ring of " : "filled by memcpy",
                        m.upload_ring ? mib(m.upload_ring_bytes) : "");
  return {
      DeviceMemoryLine{
          fmt::format("GPU {} ({})", m.g.device->caps().index, m.g.device->caps().name),
          fmt::format("dense weights {} ({}), pinned experts {} of {} ({}, {}){}, KV {} (n_ctx {} on every layer), "
                      "scratch {}, activations x/f shared with the CPU ({})",
                      mib(m.g.weight_bytes_bound), how, n_pinned, total, mib(m.gpu_expert_bytes - m.gpu_slot_bytes),
                      m.g.device->unified() ? "host-visible device memory, copied once"
                                            : "device-local, staged once",
                      dynamic, mib(m.g.kv_bytes), m.options.n_ctx, mib(m.g.scratch_bytes),
                      m.g.device->unified() ? "unified: same pages" : "host memory read over the bus")},
      DeviceMemoryLine{"CPU", fmt::format("experts {} in RAM (the mapping), {} streamed through {} cache slots",
                                          c.count(StoreTier::ram), c.count(StoreTier::stream),
                                          slots + static_cast<uint32_t>(c.pinned.size()))}};
}

ExecutorCounters HybridExecutor::counters() const {
  const Impl& m = *impl_;
  ExecutorCounters c = m.counters;
  const ForwardOpsCounters oc = m.ops->counters();
  c.weight_bytes += oc.weight_bytes;
  c.expert_bytes += oc.expert_bytes;
  const PrefetcherStats ps = m.prefetcher->stats();
  c.ram_hits = ps.hits;
  c.ram_misses = ps.misses;
  if (m.store->cache() != nullptr) c.storage_bytes = m.store->cache()->stats().bytes_loaded - m.cache_base.bytes_loaded;
  uint64_t held = m.g.kv_bytes + m.g.scratch_bytes + m.gpu_expert_bytes;
  for (const auto& w : m.g.weights) {
    if (w.placement != gpu::WeightPlacement::imported) held += w.buffer.size();
  }
  c.gpu_memory_bytes = held;
  return c;
}

void HybridExecutor::reset_counters() {
  Impl& m = *impl_;
  m.counters = {};
  m.ops->reset_counters();
  m.prefetcher->reset_stats();
  if (m.slots) m.slots->reset_stats();
  if (m.store->cache() != nullptr) m.cache_base = m.store->cache()->stats();
}

uint32_t HybridExecutor::gpu_expert_count() const {
  uint32_t n = impl_->slots ? impl_->slots->resident_count() : 0;
  for (const auto& ge : impl_->experts) n += ge.n;
  return n;
}
uint32_t HybridExecutor::gpu_slot_count() const {
  return impl_->slots ? impl_->slots->total_slots() : 0;
}
GpuSlotStats HybridExecutor::gpu_slot_stats() const {
  return impl_->slots ? impl_->slots->stats() : GpuSlotStats{};
}
uint64_t HybridExecutor::validation_message_count() const {
  return impl_->g.instance->validation_message_count();
}
std::string HybridExecutor::device_summary() const {
  return impl_->g.device->summary();
}

Result<std::unique_ptr<Executor>> make_hybrid_executor(const Model& model, const HybridExecutorOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<HybridExecutor> ex, HybridExecutor::create(model, options));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace tandem
