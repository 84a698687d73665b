#include "runtime/gpu_executor.h"

#include "gpu/ops/quantize_q8_1.h"

#include <fmt/format.h>
#include <vulkan/vulkan.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "core/log.h"
#include "gpu/gpu_options.h"
#include "gpu/ops/flash_attn.h"
#include "gpu/ops/top_k.h"
#include "runtime/gpu_executor_state.h"

namespace tandem {
namespace {

bool shader_dtype(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::q8_0 || t == DType::q4_0;
}

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

// Errors from an allocation get the name of what did not fit in front.
Status with_context(Status s, std::string_view what) {
  if (s.ok()) return s;
  return Status(s.code(), fmt::format("{}: {}", what, s.message()));
}

}  // namespace

GpuExecutor::GpuExecutor() : s_(std::make_unique<GpuGraph>()) {}

GpuExecutor::~GpuExecutor() {
  // Nothing may be in flight when the buffers go (every eval waits; an error path may not have).
  if (s_ && s_->device) vkDeviceWaitIdle(s_->device->handle());
}

Result<std::unique_ptr<GpuExecutor>> GpuExecutor::create(const Model& model,
                                                         const GpuExecutorOptions& options) {
  std::unique_ptr<GpuExecutor> ex(new GpuExecutor());
  TANDEM_RETURN_IF_ERROR(ex->s_->init(model, options, GpuGraphConfig{}));
  return ex;
}

Status GpuGraph::init(const Model& model_, const GpuExecutorOptions& options_,
                      const GpuGraphConfig& config_) {
  const ModelShape& sh = model_.shape();
  const ModelWeights& W = model_.weights();
  if (options_.n_ctx == 0 || options_.n_ubatch == 0) {
    return make_error(ErrorCode::invalid_argument,
                      "GPU executor: context (-c) and ubatch (-ub) must be > 0, got {} / {}",
                      options_.n_ctx, options_.n_ubatch);
  }
  if (options_.cache_type != DType::f16 && options_.cache_type != DType::f32) {
    return make_error(ErrorCode::invalid_argument, "GPU executor: cache type {} (only f16 and f32)",
                      dtype_name(options_.cache_type));
  }
  if (sh.n_layer == 0 || W.layers.size() != sh.n_layer || sh.n_head_kv == 0 ||
      sh.n_head % sh.n_head_kv != 0 || sh.n_embd_head_k != sh.n_embd_head_v ||
      sh.n_expert_used == 0 || sh.n_expert_used > sh.n_expert) {
    return make_error(ErrorCode::invalid_argument, "GPU executor: inconsistent model shape");
  }
  if (sh.gating == ExpertGating::none || sh.n_expert > gpu::ops::k_top_k_max_expert) {
    return make_error(ErrorCode::unsupported,
                      "GPU executor: top_k shader takes softmax/sigmoid gating over at most {} "
                      "experts (model: {} experts)",
                      gpu::ops::k_top_k_max_expert, sh.n_expert);
  }
  auto check_dtype = [](const TensorView& t) -> Status {
    if (shader_dtype(t.dtype)) return Status::success();
    return make_error(ErrorCode::unsupported,
                      "GPU executor: tensor '{}' is {}; the shaders take f32, f16, q8_0, q4_0",
                      t.name, dtype_name(t.dtype));
  };
  TANDEM_RETURN_IF_ERROR(check_dtype(W.token_embd));
  TANDEM_RETURN_IF_ERROR(check_dtype(W.output));
  for (const auto& L : W.layers) {
    for (const TensorView* t : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate_inp,
                                &L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps}) {
      TANDEM_RETURN_IF_ERROR(check_dtype(*t));
    }
    for (const TensorView* t : {&L.attn_norm, &L.ffn_norm}) {
      if (t->dtype != DType::f32) {
        return make_error(ErrorCode::unsupported, "GPU executor: norm '{}' is {}, not f32", t->name,
                          dtype_name(t->dtype));
      }
    }
  }

  GpuGraph& s = *this;
  s.model = &model_;
  s.options = options_;
  s.config = config_;
  s.n_ub = std::min(options_.n_ubatch, options_.n_ctx);
  if (static_cast<uint64_t>(s.n_ub) * sh.n_expert_used > 65535) {
    s.n_ub =
        65535 / sh.n_expert_used;  // mul_mat_id / mul_mat_vec_id: slots in one dispatch dimension
  }

  gpu::GpuOptions go = gpu::GpuOptions::from_env();
  go.device = options_.device.empty() ? "auto" : options_.device;
  TANDEM_ASSIGN_OR_RETURN(s.instance, gpu::Instance::create(go));
  auto dev = gpu::Device::create(*s.instance);
  if (!dev.ok()) {
    return make_error(dev.status().code(), "no Vulkan device for --device '{}': {}", go.device,
                      dev.status().message());
  }
  s.device = std::move(dev).value();
  const gpu::Device& dev_ref = *s.device;
  log_info("gpu: {}", dev_ref.summary());
  TANDEM_ASSIGN_OR_RETURN(s.pipelines, gpu::PipelineCache::create(dev_ref));
  TANDEM_ASSIGN_OR_RETURN(s.rec, gpu::CommandRecorder::create(dev_ref, *s.pipelines));
  TANDEM_ASSIGN_OR_RETURN(s.decode_rec, gpu::CommandRecorder::create(dev_ref, *s.pipelines));
  if (!dev_ref.unified() || !dev_ref.host_import()) {
    TANDEM_ASSIGN_OR_RETURN(s.staging, gpu::StagingRing::create(dev_ref));
  }

  // Weights: one buffer per tensor, shared where two views are the same tensor (tied output).
  auto bind = [&](const TensorView& t) -> Status {
    if (s.weight_index.count(t.data) != 0) return Status::success();
    const uint64_t bytes = t.nbytes();
    auto wb = gpu::make_weight_buffer(dev_ref, s.staging.get(), t.data, bytes, t.name);
    if (!wb.ok())
      return with_context(wb.status(), fmt::format("weights '{}' ({})", t.name, mib(bytes)));
    if (wb->placement == gpu::WeightPlacement::staged) s.staged_bytes += bytes;
    s.weight_bytes_bound += bytes;
    s.weight_index[t.data] = s.weights.size();
    s.weights.push_back(std::move(wb).value());
    return Status::success();
  };
  TANDEM_RETURN_IF_ERROR(bind(W.token_embd));
  TANDEM_RETURN_IF_ERROR(bind(W.output_norm));
  TANDEM_RETURN_IF_ERROR(bind(W.output));
  for (const auto& L : W.layers) {
    for (const TensorView* t : {&L.attn_norm, &L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output,
                                &L.ffn_norm, &L.ffn_gate_inp}) {
      TANDEM_RETURN_IF_ERROR(bind(*t));
    }
    if (config.bind_experts) {
      for (const TensorView* t : {&L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps}) {
        TANDEM_RETURN_IF_ERROR(bind(*t));
      }
    }
  }
  if (s.staging) TANDEM_RETURN_IF_ERROR(s.staging->wait_idle());
  s.counters.upload_bytes = s.staged_bytes;

  // KV cache: every layer holds all n_ctx positions (see the header).
  const uint64_t n_kv = sh.n_embd_k_gqa();
  const uint64_t layer_bytes =
      dtype_row_size(options_.cache_type, static_cast<int64_t>(n_kv)) * options_.n_ctx;
  for (uint32_t il = 0; il < sh.n_layer; ++il) {
    for (auto* cache : {&s.k_cache, &s.v_cache}) {
      auto b = gpu::Buffer::create(
          dev_ref, layer_bytes, gpu::MemoryIntent::device_weights,
          fmt::format("{} cache layer {}", cache == &s.k_cache ? "K" : "V", il));
      if (!b.ok()) {
        return with_context(
            b.status(), fmt::format("KV cache ({} buffers of {}: K and V of every layer, n_ctx {})",
                                    2 * sh.n_layer, mib(layer_bytes), options_.n_ctx));
      }
      cache->push_back(std::move(b).value());
      s.kv_bytes += layer_bytes;
    }
  }

  // Scratch for n_ub rows.
  const uint64_t rows = s.n_ub;
  const uint64_t kk = sh.n_expert_used;
  auto make = [&](gpu::Buffer& out, uint64_t bytes, gpu::MemoryIntent intent,
                  const char* name) -> Status {
    auto b = gpu::Buffer::create(dev_ref, std::max<uint64_t>(bytes, 16), intent, name);
    if (!b.ok())
      return with_context(b.status(), fmt::format("scratch '{}' ({})", name, mib(bytes)));
    out = std::move(b).value();
    s.scratch_bytes += out.size();
    return Status::success();
  };
  const auto dev_local = gpu::MemoryIntent::device_weights;
  TANDEM_RETURN_IF_ERROR(make(s.tokens, rows * 4, gpu::MemoryIntent::shared, "tokens"));
  TANDEM_RETURN_IF_ERROR(make(s.pos, rows * 4, gpu::MemoryIntent::shared, "positions"));
  TANDEM_RETURN_IF_ERROR(
      make(s.pos_rows, rows * 4, gpu::MemoryIntent::shared, "positions of the logits rows"));
  // The hybrid executor's CPU reads x and f and writes x (host_activations).
  const auto act = config.host_activations ? gpu::MemoryIntent::shared : dev_local;
  for (auto [buf, name, intent] :
       {std::tuple{&s.x, "x", act}, {&s.h, "h", dev_local}, {&s.f, "f", act},
        {&s.a, "a", dev_local}, {&s.moe, "moe", dev_local}}) {
    TANDEM_RETURN_IF_ERROR(make(*buf, rows * sh.n_embd * 4, intent, name));
  }
  TANDEM_RETURN_IF_ERROR(make(s.q, rows * sh.n_embd_q() * 4, dev_local, "q"));
  TANDEM_RETURN_IF_ERROR(make(s.attn, rows * sh.n_embd_q() * 4, dev_local, "attn"));
  TANDEM_RETURN_IF_ERROR(make(s.k, rows * n_kv * 4, dev_local, "k"));
  TANDEM_RETURN_IF_ERROR(make(s.v, rows * n_kv * 4, dev_local, "v"));
  TANDEM_RETURN_IF_ERROR(make(s.router_logits, rows * sh.n_expert * 4, dev_local, "router logits"));
  TANDEM_RETURN_IF_ERROR(make(s.expert_ids, rows * kk * 4, dev_local, "expert ids"));
  TANDEM_RETURN_IF_ERROR(make(s.expert_weights, rows * kk * 4, dev_local, "expert weights"));
  TANDEM_RETURN_IF_ERROR(make(s.gate, rows * kk * sh.n_ff_exp * 4, dev_local, "gate"));
  TANDEM_RETURN_IF_ERROR(make(s.up, rows * kk * sh.n_ff_exp * 4, dev_local, "up"));
  TANDEM_RETURN_IF_ERROR(make(s.expert_out, rows * kk * sh.n_embd * 4, dev_local, "expert out"));
  const int64_t split_rows = std::min<int64_t>(s.n_ub, gpu::ops::k_flash_attn_split_max_rows);
  uint64_t fa = 0;
  for (int64_t m = 1; m <= split_rows; ++m) {
    fa = std::max(
        fa, gpu::ops::flash_attn_scratch_bytes(sh.n_embd_head_k, sh.n_head, options_.n_ctx, m));
  }
  TANDEM_RETURN_IF_ERROR(make(s.fa_scratch, fa, dev_local, "flash_attn scratch"));
  const int64_t q8_cols = std::max<int64_t>({sh.n_embd, sh.n_embd_q(), sh.n_ff_exp});
  TANDEM_RETURN_IF_ERROR(make(s.q8_1, gpu::ops::q8_1_bytes(q8_cols, std::max<int64_t>(1, kk)), dev_local, "q8_1"));
  TANDEM_RETURN_IF_ERROR(make(s.logits, rows * sh.n_vocab * 4, dev_local, "logits"));
  TANDEM_RETURN_IF_ERROR(
      make(s.logits_rb, rows * sh.n_vocab * 4, gpu::MemoryIntent::readback, "logits readback"));
  TANDEM_RETURN_IF_ERROR(make(s.routing_rb, uint64_t{sh.n_layer} * rows * kk * 8,
                              gpu::MemoryIntent::readback, "routing readback"));

  s.cpu_ops = make_cpu_ops();
  if (options_.check) {
    s.checker = std::make_unique<GpuChecker>(dev_ref, *s.rec);
    log_info("gpu: TANDEM_CHECK_GPU=1: every op is recomputed on the CPU (slow)");
  }
  return Status::success();
}

uint32_t GpuExecutor::n_ctx() const {
  return s_->options.n_ctx;
}
uint32_t GpuExecutor::n_past() const {
  return s_->n_past;
}
void GpuExecutor::clear() {
  s_->n_past = 0;
}

Status GpuExecutor::truncate(uint32_t n) {
  if (n > s_->n_past) {
    return make_error(ErrorCode::invalid_argument,
                      "cannot truncate the KV cache to {} positions: it holds {}", n, s_->n_past);
  }
  // Positions >= n are simply rewritten by the next eval; nothing else depends on them.
  s_->n_past = n;
  return Status::success();
}

void GpuExecutor::set_observer(ForwardObserver* observer) {
  s_->observer = observer;
}

Status GpuExecutor::eval(std::span<const int32_t> tokens, LogitsRows rows,
                         std::vector<float>& logits) {
  GpuGraph& s = *s_;
  const ModelShape& sh = s.model->shape();
  if (tokens.empty()) return make_error(ErrorCode::invalid_argument, "no tokens to evaluate");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= sh.n_vocab) {
      return make_error(ErrorCode::invalid_argument,
                        "token {} (at index {}) is outside the vocabulary [0, {})", tokens[i], i,
                        sh.n_vocab);
    }
  }
  if (uint64_t{s.n_past} + tokens.size() > s.options.n_ctx) {
    return make_error(ErrorCode::invalid_argument,
                      "{} cached + {} new tokens exceeds the context of {} (-c)", s.n_past,
                      tokens.size(), s.options.n_ctx);
  }
  const bool all = rows == LogitsRows::all;
  const size_t nv = sh.n_vocab;
  logits.assign((all ? tokens.size() : 1) * nv, 0.0f);
  ++s.counters.evals;
  std::vector<int32_t> pos;
  for (size_t b = 0; b < tokens.size(); b += s.n_ub) {
    const size_t n = std::min<size_t>(s.n_ub, tokens.size() - b);
    GpuUbatch ub;
    ub.n_tokens = static_cast<int64_t>(n);
    ub.p0 = s.n_past;
    ub.want_logits = all || b + n == tokens.size();
    ub.all_rows = all;
    ub.read_routing = s.observer != nullptr;
    pos.resize(n);
    for (size_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(s.n_past + t);
    TANDEM_RETURN_IF_ERROR(s.tokens.write(tokens.data() + b, n * 4));
    TANDEM_RETURN_IF_ERROR(s.pos.write(pos.data(), n * 4));
    const size_t tail = static_cast<size_t>(ub.last_r0());
    if (tail > 0 && tail < n)
      TANDEM_RETURN_IF_ERROR(s.pos_rows.write(pos.data() + tail, (n - tail) * 4));
    s.counters.upload_bytes += n * 8;

    if (s.checker) {
      TANDEM_RETURN_IF_ERROR(s.record_ubatch(*s.rec, ub, true));
    } else if (n == 1) {
      // Record once, replay: the recording depends only on (want_logits, read_routing).
      gpu::CommandRecorder& rec = *s.decode_rec;
      if (!s.decode_recorded || !rec.replayable() || s.decode_want_logits != ub.want_logits ||
          s.decode_routing != ub.read_routing) {
        s.decode_recorded = false;
        TANDEM_RETURN_IF_ERROR(rec.begin_reusable());
        Status st = s.record_ubatch(rec, ub, false);
        if (!st.ok()) {
          (void)rec.submit();  // closes the recording; nothing was dispatched past the failure
          (void)rec.wait();
          return st;
        }
        TANDEM_RETURN_IF_ERROR(rec.submit_and_wait());
        s.decode_recorded = true;
        s.decode_want_logits = ub.want_logits;
        s.decode_routing = ub.read_routing;
      } else {
        TANDEM_RETURN_IF_ERROR(rec.resubmit_and_wait());
        ++s.replays;
      }
    } else {
      TANDEM_RETURN_IF_ERROR(s.rec->begin());
      Status st = s.record_ubatch(*s.rec, ub, false);
      if (!st.ok()) {
        (void)s.rec->submit();
        (void)s.rec->wait();
        return st;
      }
      TANDEM_RETURN_IF_ERROR(s.rec->submit_and_wait());
    }
    ++s.counters.syncs;
    s.counters.weight_bytes += s.ubatch_weight_bytes(ub);
    s.counters.expert_bytes += [&] {
      uint64_t e = 0;
      for (uint32_t il = 0; il < sh.n_layer; ++il) {
        const int64_t m = il + 1 == sh.n_layer ? ub.n_tokens - ub.last_r0() : ub.n_tokens;
        e += static_cast<uint64_t>(m) * sh.n_expert_used * s.expert_bytes_per_slot(il);
      }
      return e;
    }();

    if (ub.want_logits) {
      const size_t out_rows = all ? n : 1;
      float* dst = all ? logits.data() + b * nv : logits.data();
      TANDEM_RETURN_IF_ERROR(s.logits_rb.read(dst, out_rows * nv * 4));
    }
    if (s.observer) {
      const uint64_t per_layer = static_cast<uint64_t>(s.n_ub) * sh.n_expert_used * 4;
      for (uint32_t il = 0; il < sh.n_layer; ++il) {
        const int64_t r0 = il + 1 == sh.n_layer ? ub.last_r0() : 0;
        const size_t m = static_cast<size_t>(ub.n_tokens - r0);
        if (m == 0) continue;
        std::vector<int32_t> ids(m * sh.n_expert_used);
        std::vector<float> w(m * sh.n_expert_used);
        TANDEM_RETURN_IF_ERROR(s.routing_rb.read(ids.data(), ids.size() * 4, il * 2 * per_layer));
        TANDEM_RETURN_IF_ERROR(
            s.routing_rb.read(w.data(), w.size() * 4, il * 2 * per_layer + per_layer));
        s.observer->on_routing(il, std::span<const int32_t>(pos.data() + r0, m), ids, w);
      }
    }
    s.n_past += static_cast<uint32_t>(n);
    s.counters.tokens += n;
  }
  return Status::success();
}

std::vector<DeviceMemoryLine> GpuExecutor::memory_lines() const {
  const GpuGraph& s = *s_;
  std::string kv_how = s.device->unified() ? "unified" : "device-local";
  return {
      DeviceMemoryLine{fmt::format("GPU {} ({})", s.device->caps().index, s.device->caps().name),
                       fmt::format(
                           "weights {} {}, KV {} {} (n_ctx {} on every layer), scratch {}",
                           mib(s.weight_bytes_bound),
                           [&] {
                             const std::string p = weight_placement();
                             if (p == "imported")
                               return std::string("zero-copy (host-imported file pages)");
                             if (p == "host_visible") return std::string("host-visible (one copy)");
                             if (p == "staged") return std::string("device-local (staged upload)");
                             return p;
                           }(),
                           mib(s.kv_bytes), kv_how, s.options.n_ctx, mib(s.scratch_bytes))}};
}

ExecutorCounters GpuExecutor::counters() const {
  ExecutorCounters c = s_->counters;
  uint64_t held = s_->kv_bytes + s_->scratch_bytes;
  for (const auto& w : s_->weights) {
    if (w.placement != gpu::WeightPlacement::imported) held += w.buffer.size();
  }
  c.gpu_memory_bytes = held;
  return c;
}

void GpuExecutor::reset_counters() {
  s_->counters = ExecutorCounters{};
}

std::string GpuExecutor::device_summary() const {
  return s_->device->summary();
}

std::string GpuExecutor::weight_placement() const {
  // "mixed: ..." when an import fell back for some tensors.
  std::map<std::string, uint64_t> by;
  for (const auto& w : s_->weights) by[gpu::weight_placement_name(w.placement)] += w.buffer.size();
  if (by.size() == 1) return by.begin()->first;
  std::string out = "mixed:";
  for (const auto& [k, v] : by) out += fmt::format(" {} {}", k, mib(v));
  return out;
}

uint64_t GpuExecutor::weight_bytes_bound() const {
  return s_->weight_bytes_bound;
}
uint64_t GpuExecutor::validation_message_count() const {
  return s_->instance->validation_message_count();
}
uint64_t GpuExecutor::replays() const {
  return s_->replays;
}
void GpuExecutor::set_check_fault(const GpuCheckFault& fault) {
  if (s_->checker) s_->checker->set_fault(fault);
}

Result<std::unique_ptr<Executor>> make_gpu_executor(const Model& model,
                                                    const GpuExecutorOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<GpuExecutor> ex, GpuExecutor::create(model, options));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace tandem
