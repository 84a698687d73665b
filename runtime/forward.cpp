#include "runtime/forward.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/fp16.h"
#include "cpu/kernel_table.h"

namespace tandem {

struct Forward::Arena {
  tbb::task_arena arena;
  explicit Arena(int n) : arena(n > 0 ? n : tbb::task_arena::automatic) {}
};

Forward::Forward(const ModelShape& shape, const ModelWeights& weights, const ForwardOptions& options,
                 std::unique_ptr<ForwardOps> ops)
    : shape_(shape), weights_(weights), options_(options), ops_(std::move(ops)),
      arena_(std::make_unique<Arena>(options.n_threads)) {}

Forward::~Forward() = default;

Result<std::unique_ptr<Forward>> Forward::create(const ModelShape& shape, const ModelWeights& weights,
                                                 const ForwardOptions& options, std::unique_ptr<ForwardOps> ops) {
  if (options.n_ubatch == 0) return make_error(ErrorCode::invalid_argument, "ubatch size (-ub) must be > 0");
  if (options.n_threads < 0) {
    return make_error(ErrorCode::invalid_argument, "thread count (-t) must be >= 0, got {}", options.n_threads);
  }
  if (shape.n_layer == 0 || weights.layers.size() != shape.n_layer) {
    return make_error(ErrorCode::invalid_argument, "model weights have {} layers, the shape says {}",
                      weights.layers.size(), shape.n_layer);
  }
  if (shape.n_head_kv == 0 || shape.n_head % shape.n_head_kv != 0 || shape.n_rot % 2 != 0 ||
      shape.n_rot > shape.n_embd_head_k || shape.n_expert_used == 0 || shape.n_expert_used > shape.n_expert) {
    return make_error(ErrorCode::invalid_argument,
                      "inconsistent model shape: n_head {} n_head_kv {} n_rot {} head_dim {} n_expert_used {} n_expert {}",
                      shape.n_head, shape.n_head_kv, shape.n_rot, shape.n_embd_head_k, shape.n_expert_used,
                      shape.n_expert);
  }
  if (!ops) ops = make_fast_cpu_ops(cpu::kernels());  // make_cpu_ops() stays selectable (--cpu-ops plain)
  return std::unique_ptr<Forward>(new Forward(shape, weights, options, std::move(ops)));
}

int Forward::n_threads() const { return arena_->arena.max_concurrency(); }

Status Forward::eval(KvCache& kv, std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits) {
  if (tokens.empty()) return make_error(ErrorCode::invalid_argument, "no tokens to evaluate");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= shape_.n_vocab) {
      return make_error(ErrorCode::invalid_argument, "token {} (at index {}) is outside the vocabulary [0, {})",
                        tokens[i], i, shape_.n_vocab);
    }
  }
  if (kv.n_layer() != shape_.n_layer || kv.layer(0).n_head_kv != shape_.n_head_kv ||
      kv.layer(0).head_dim != shape_.n_embd_head_k) {
    return make_error(ErrorCode::invalid_argument, "the KV cache was made for another model shape");
  }
  if (uint64_t{kv.n_past()} + tokens.size() > kv.n_ctx()) {
    return make_error(ErrorCode::invalid_argument,
                      "{} cached + {} new tokens exceeds the context of {} (-c)", kv.n_past(), tokens.size(),
                      kv.n_ctx());
  }
  const bool all = rows == LogitsRows::all;
  logits.assign((all ? tokens.size() : 1) * static_cast<size_t>(shape_.n_vocab), 0.0f);
  const size_t ub = std::min<size_t>(options_.n_ubatch, kv.n_ubatch());
  Status status;
  arena_->arena.execute([&] {
    for (size_t b = 0; b < tokens.size() && status.ok(); b += ub) {
      const size_t n = std::min(ub, tokens.size() - b);
      const bool last_ubatch = b + n == tokens.size();
      float* out = all ? logits.data() + b * shape_.n_vocab : logits.data();
      status = eval_ubatch(kv, tokens.subspan(b, n), all || last_ubatch, all, out);
    }
  });
  return status;
}

Status Forward::route(uint32_t il, const float* x, int64_t m, const int32_t* pos) {
  router_logits_.resize(static_cast<size_t>(m * shape_.n_expert));
  TANDEM_RETURN_IF_ERROR(ops_->mul_mat(weights_.layers[il].ffn_gate_inp, x, m, router_logits_.data()));
  select_experts(il, m, pos);
  return Status::success();
}

void Forward::select_experts(uint32_t il, int64_t m, const int32_t* pos) {
  const int64_t ne = shape_.n_expert;
  const int64_t k = shape_.n_expert_used;
  expert_ids_.resize(static_cast<size_t>(m * k));
  expert_weights_.resize(static_cast<size_t>(m * k));
  std::vector<float> p(static_cast<size_t>(ne));
  std::vector<int32_t> idx(static_cast<size_t>(ne));
  for (int64_t i = 0; i < m; ++i) {
    const float* lg = router_logits_.data() + i * ne;
    // Probabilities over all experts in f64 rounded to f32 (as cpu/reference; llama.cpp holds
    // them in f32), then the top k of those (same ranking as the logits, spec §1.3).
    if (shape_.gating == ExpertGating::softmax) {
      const float mx = *std::max_element(lg, lg + ne);
      double sum = 0.0;
      std::vector<double> e(static_cast<size_t>(ne));
      for (int64_t j = 0; j < ne; ++j) sum += e[static_cast<size_t>(j)] = std::exp(static_cast<double>(lg[j]) - mx);
      for (int64_t j = 0; j < ne; ++j) p[static_cast<size_t>(j)] = static_cast<float>(e[static_cast<size_t>(j)] / sum);
    } else {  // sigmoid; the loader resolves a missing gating key to sigmoid (spec §6.2)
      for (int64_t j = 0; j < ne; ++j)
        p[static_cast<size_t>(j)] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(lg[j]))));
    }
    auto key = [&](int32_t j) {
      const float v = p[static_cast<size_t>(j)];
      return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
    };
    std::iota(idx.begin(), idx.end(), 0);
    // Stable: ties go to the lower expert id.
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return key(a) > key(b); });
    double sum = 0.0;
    for (int64_t s = 0; s < k; ++s) sum += p[static_cast<size_t>(idx[static_cast<size_t>(s)])];
    // llama.cpp clamps the sum (ggml_clamp(weights_sum, 6.103515625e-5, INF)); PowerInfer does not.
    sum = std::max(sum, 6.103515625e-5);
    for (int64_t s = 0; s < k; ++s) {
      const int32_t e = idx[static_cast<size_t>(s)];
      expert_ids_[static_cast<size_t>(i * k + s)] = e;
      expert_weights_[static_cast<size_t>(i * k + s)] = static_cast<float>(p[static_cast<size_t>(e)] / sum);
    }
  }
  if (observer_) {
    observer_->on_routing(il, std::span<const int32_t>(pos, static_cast<size_t>(m)), expert_ids_, expert_weights_);
  }
}

Status Forward::eval_ubatch(KvCache& kv, std::span<const int32_t> tokens, bool want_logits, bool all_rows,
                            float* logits) {
  const int64_t t_n = static_cast<int64_t>(tokens.size());
  const int64_t d = shape_.n_embd;
  const int64_t hd = shape_.n_embd_head_k;
  const int64_t n_q = shape_.n_embd_q();
  const int64_t n_kv = shape_.n_embd_k_gqa();
  const int64_t p0 = kv.n_past();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  pos_.resize(static_cast<size_t>(t_n));
  for (int64_t t = 0; t < t_n; ++t) pos_[static_cast<size_t>(t)] = static_cast<int32_t>(p0 + t);
  x_.resize(static_cast<size_t>(t_n * d));
  h_.resize(static_cast<size_t>(t_n * d));
  k_.resize(static_cast<size_t>(t_n * n_kv));
  v_.resize(static_cast<size_t>(t_n * n_kv));
  q_.resize(static_cast<size_t>(t_n * n_q));
  attn_.resize(static_cast<size_t>(t_n * n_q));
  a_.resize(static_cast<size_t>(t_n * d));
  f_.resize(static_cast<size_t>(t_n * d));
  moe_.resize(static_cast<size_t>(t_n * d));
  gate_active_.resize(shape_.n_expert);
  routed_.resize(shape_.n_expert);
  TANDEM_RETURN_IF_ERROR(ops_->get_rows(weights_.token_embd, tokens.data(), t_n, x_.data()));

  for (uint32_t il = 0; il < shape_.n_layer; ++il) {
    const LayerWeights& lw = weights_.layers[il];
    // Rows whose output this layer must produce: all of them, except on the last layer, where
    // only the rows that give logits go past the K/V projections (spec §2.1 "last layer only").
    const bool last = il + 1 == shape_.n_layer;
    const int64_t r0 = !last ? 0 : (!want_logits ? t_n : (all_rows ? 0 : t_n - 1));
    const int64_t m = t_n - r0;
    float* xr = x_.data() + r0 * d;
    const int32_t* pr = pos_.data() + r0;
    // An observer hears the routing before anything else of the layer runs (the streaming
    // executor starts its storage reads then); without one, the router joins the K, V and Q
    // projections in one mul_mat_multi (one parallel region over four matrices).
    const bool route_alone = observer_ != nullptr || m != t_n;
    if (m > 0 && route_alone) TANDEM_RETURN_IF_ERROR(route(il, xr, m, pr));
    ops_->rms_norm(x_.data(), static_cast<const float*>(lw.attn_norm.data), t_n, d, shape_.rms_norm_eps, h_.data());
    if (m == t_n) {
      router_logits_.resize(static_cast<size_t>(m * shape_.n_expert));
      const MatMulJob jobs[] = {{&lw.attn_k, h_.data(), t_n, k_.data()},
                                {&lw.attn_v, h_.data(), t_n, v_.data()},
                                {&lw.attn_q, h_.data(), m, q_.data()},
                                {&lw.ffn_gate_inp, xr, m, router_logits_.data()}};
      TANDEM_RETURN_IF_ERROR(ops_->mul_mat_multi(std::span<const MatMulJob>(jobs, route_alone ? 3 : 4)));
      if (!route_alone && m > 0) select_experts(il, m, pr);
    } else {
      TANDEM_RETURN_IF_ERROR(ops_->mul_mat(lw.attn_k, h_.data(), t_n, k_.data()));
      TANDEM_RETURN_IF_ERROR(ops_->mul_mat(lw.attn_v, h_.data(), t_n, v_.data()));
    }
    const bool rope = shape_.use_rope(il);
    if (rope) ops_->rope_neox(k_.data(), pos_.data(), t_n, shape_.n_head_kv, hd, shape_.n_rot, shape_.rope_base(il));
    // NoPE layers store K as projected (spec §6.6).
    const KvLayerView cache = kv.layer(il);
    for (int64_t t = 0; t < t_n; ++t) {
      const float* kt = k_.data() + t * n_kv;
      const float* vt = v_.data() + t * n_kv;
      if (cache.type == DType::f32) {
        std::copy_n(kt, n_kv, reinterpret_cast<float*>(cache.k_cell(p0 + t)));
        std::copy_n(vt, n_kv, reinterpret_cast<float*>(cache.v_cell(p0 + t)));
      } else {
        auto* kc = reinterpret_cast<uint16_t*>(cache.k_cell(p0 + t));
        auto* vc = reinterpret_cast<uint16_t*>(cache.v_cell(p0 + t));
        for (int64_t c = 0; c < n_kv; ++c) {
          kc[c] = fp32_to_fp16(kt[c]);
          vc[c] = fp32_to_fp16(vt[c]);
        }
      }
    }
    if (m == 0) continue;

    if (m != t_n) TANDEM_RETURN_IF_ERROR(ops_->mul_mat(lw.attn_q, h_.data() + r0 * d, m, q_.data()));
    if (rope) ops_->rope_neox(q_.data(), pr, m, shape_.n_head, hd, shape_.n_rot, shape_.rope_base(il));
    ops_->attention(q_.data(), pr, m, shape_.n_head, cache, scale, attn_.data());
    TANDEM_RETURN_IF_ERROR(ops_->mul_mat(lw.attn_output, attn_.data(), m, a_.data()));
    for (int64_t i = 0; i < m * d; ++i) xr[i] += a_[static_cast<size_t>(i)];

    ops_->rms_norm(xr, static_cast<const float*>(lw.ffn_norm.data), m, d, shape_.rms_norm_eps, f_.data());
    MoeArgs args;
    args.gate_exps = &lw.ffn_gate_exps;
    args.up_exps = &lw.ffn_up_exps;
    args.down_exps = &lw.ffn_down_exps;
    args.down_layout = shape_.down_layout;
    args.n_embd = d;
    args.n_ff_exp = shape_.n_ff_exp;
    args.n_expert = shape_.n_expert;
    args.n_expert_used = shape_.n_expert_used;
    args.x = f_.data();
    args.expert_ids = expert_ids_.data();
    args.weights = expert_weights_.data();
    args.n_rows = m;
    // Per-neuron counts only for an observer that asks (the profiler): zero cost otherwise.
    const bool want_neurons = observer_ != nullptr && observer_->wants_gate_neurons();
    if (want_neurons) {
      gate_neurons_.assign(static_cast<size_t>(shape_.n_expert) * shape_.n_ff_exp, 0);
      args.gate_neuron_active = gate_neurons_.data();
    }
    std::fill(gate_active_.begin(), gate_active_.end(), 0);
    TANDEM_RETURN_IF_ERROR(ops_->moe(args, moe_.data(), gate_active_));
    for (int64_t i = 0; i < m * d; ++i) xr[i] += moe_[static_cast<size_t>(i)];

    if (observer_) {
      std::fill(routed_.begin(), routed_.end(), 0);
      for (int64_t i = 0; i < m * static_cast<int64_t>(shape_.n_expert_used); ++i)
        ++routed_[static_cast<size_t>(expert_ids_[static_cast<size_t>(i)])];
      for (uint32_t e = 0; e < shape_.n_expert; ++e) {
        if (routed_[e] == 0) continue;
        observer_->on_expert_gate_activity(il, e, gate_active_[e], routed_[e] * shape_.n_ff_exp);
        if (want_neurons) {
          const std::span<const uint32_t> counts(gate_neurons_.data() + static_cast<size_t>(e) * shape_.n_ff_exp,
                                                 shape_.n_ff_exp);
          // Ops that do not count per neuron leave zeros: pass on only counts that add up.
          const uint64_t sum = std::accumulate(counts.begin(), counts.end(), uint64_t{0});
          if (sum == gate_active_[e]) {
            observer_->on_expert_gate_neurons(il, e, counts, static_cast<uint32_t>(routed_[e]));
          }
        }
      }
    }
  }

  if (want_logits) {
    const int64_t r0 = all_rows ? 0 : t_n - 1;
    const int64_t m = t_n - r0;
    ops_->rms_norm(x_.data() + r0 * d, static_cast<const float*>(weights_.output_norm.data), m, d,
                   shape_.rms_norm_eps, h_.data());
    TANDEM_RETURN_IF_ERROR(ops_->mul_mat(weights_.output, h_.data(), m, logits));
  }
  kv.advance(static_cast<uint32_t>(t_n));
  return Status::success();
}

}  // namespace tandem
