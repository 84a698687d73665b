#include "runtime/streaming_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>

namespace tandem {

int32_t layer_of_tensor(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int32_t l = -1;
  const char* b = name.data() + 4;
  const char* e = name.data() + name.size();
  const auto r = std::from_chars(b, e, l);
  if (r.ec != std::errc() || r.ptr == b || r.ptr == e || *r.ptr != '.') return -1;
  return l;
}

StreamingOps::StreamingOps(std::unique_ptr<ForwardOps> base, const ExpertStore& store, Trace* trace)
    : base_(std::move(base)), store_(store), trace_(trace) {}

Status StreamingOps::mul_mat(const TensorView& w, const float* x, int64_t m, float* y) {
  // The router is the only mul_mat of ffn_gate_inp: its start opens the layer's "router" span.
  if (trace_ != nullptr && w.name.find("ffn_gate_inp") != std::string_view::npos)
    router_start_us_ = trace_->now_us();
  return base_->mul_mat(w, x, m, y);
}

void StreamingOps::mark_routed(uint32_t layer, uint64_t pass) {
  pass_ = pass;
  if (trace_ == nullptr) return;
  const int64_t now = trace_->now_us();
  if (router_start_us_ >= 0) {
    trace_->complete("router", "layer", router_start_us_, now - router_start_us_,
                     {{"layer", layer}, {"pass", int64_t(pass)}});
  }
  router_start_us_ = -1;
}

void StreamingOps::mark_attention_start(uint32_t /*layer*/) {
  if (trace_ != nullptr) attention_start_us_ = trace_->now_us();
}

ForwardOpsCounters StreamingOps::counters() const {
  ForwardOpsCounters c = base_->counters();
  if (c.expert_bytes == 0) {
    c.expert_bytes = stats_.expert_slab_bytes;
    c.weight_bytes += stats_.expert_slab_bytes;
  }
  return c;
}

void StreamingOps::reset_counters() {
  base_->reset_counters();
  stats_ = {};
}

Status StreamingOps::moe(const MoeArgs& a, float* out, std::span<uint64_t> gate_active) {
  const int64_t d = a.n_embd;
  const int64_t k = a.n_expert_used;
  const int32_t layer =
      layer_of_tensor(a.gate_exps != nullptr ? a.gate_exps->name : std::string_view{});
  if (layer < 0 || uint32_t(layer) >= store_.config().n_layer ||
      a.n_expert != int64_t(store_.config().n_expert)) {
    return make_error(ErrorCode::internal,
                      "streaming moe: cannot tell the layer of '{}' ({} experts, store has {})",
                      a.gate_exps != nullptr ? a.gate_exps->name : std::string_view("?"),
                      a.n_expert, store_.config().n_expert);
  }
  const int64_t t_enter = trace_ != nullptr ? trace_->now_us() : 0;
  if (trace_ != nullptr && attention_start_us_ >= 0) {
    trace_->complete("attention", "layer", attention_start_us_, t_enter - attention_start_us_,
                     {{"layer", layer}, {"pass", int64_t(pass_)}});
    attention_start_us_ = -1;
  }

  by_expert_.resize(size_t(a.n_expert));
  for (auto& rows : by_expert_) rows.clear();
  for (int64_t i = 0; i < a.n_rows; ++i) {
    for (int64_t s = 0; s < k; ++s) {
      const int32_t e = a.expert_ids[i * k + s];
      if (e < 0 || e >= a.n_expert) {
        return make_error(ErrorCode::internal, "moe: expert id {} out of range [0, {})", e,
                          a.n_expert);
      }
      by_expert_[size_t(e)].push_back({i, s});
    }
  }
  // Experts whose weights are in RAM now go first; then those still being read (in expert
  // order), so their reads keep overlapping with computation.
  std::vector<int32_t> order;
  std::vector<int32_t> later;
  for (int32_t e = 0; e < int32_t(a.n_expert); ++e) {
    if (by_expert_[size_t(e)].empty()) continue;
    const ExpertId id{layer, e};
    const bool ready =
        store_.tier(id) != StoreTier::stream || store_.cache()->state(id) == ExpertState::present;
    (ready ? order : later).push_back(e);
  }
  order.insert(order.end(), later.begin(), later.end());

  y_.resize(size_t(a.n_rows * k * d));
  for (const int32_t e : order) {
    const auto& rows = by_expert_[size_t(e)];
    const int64_t me = int64_t(rows.size());
    const auto c0 = std::chrono::steady_clock::now();
    const int64_t t0 = trace_ != nullptr ? trace_->now_us() : 0;
    auto w = store_.acquire({layer, e});
    if (!w.ok()) return w.status();
    const int64_t t1 = trace_ != nullptr ? trace_->now_us() : 0;
    ++stats_.experts;
    stats_.streamed_experts += w->streamed ? 1 : 0;
    stats_.expert_slab_bytes += w->gate.nbytes() + w->up.nbytes() + w->down.nbytes();
    if (w->waited) {
      ++stats_.waits;
      stats_.wait_us += uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - c0)
                                     .count());
      if (trace_ != nullptr) {
        trace_->complete("wait", "wait", t0, t1 - t0,
                         {{"layer", layer}, {"expert", e}, {"pass", int64_t(pass_)}});
      }
    }
    xe_.resize(size_t(me * d));
    for (int64_t r = 0; r < me; ++r)
      std::copy_n(a.x + rows[size_t(r)].first * d, d, xe_.data() + r * d);
    if (int64_t(ones_.size()) < me) {
      ones_.assign(size_t(me), 1.0f);
      zeros_.assign(size_t(me), 0);
    }
    MoeArgs one = a;
    one.gate_exps = &w->gate;
    one.up_exps = &w->up;
    one.down_exps = &w->down;
    one.n_expert = 1;
    one.n_expert_used = 1;
    one.x = xe_.data();
    one.expert_ids = zeros_.data();
    one.weights = ones_.data();
    one.n_rows = me;
    one.gate_neuron_active =
        a.gate_neuron_active != nullptr ? a.gate_neuron_active + e * a.n_ff_exp : nullptr;
    ye_.resize(size_t(me * d));
    TANDEM_RETURN_IF_ERROR(base_->moe(one, ye_.data(), gate_active.subspan(size_t(e), 1)));
    for (int64_t r = 0; r < me; ++r) {
      const auto [row, slot] = rows[size_t(r)];
      std::copy_n(ye_.data() + r * d, d, y_.data() + (row * k + slot) * d);
    }
    if (trace_ != nullptr) {
      const int64_t t2 = trace_->now_us();
      trace_->complete("expert", "cpu", t1, t2 - t1,
                       {{"layer", layer},
                        {"expert", e},
                        {"rows", me},
                        {"pass", int64_t(pass_)},
                        {"streamed", w->streamed ? 1 : 0}});
    }
  }
  // Slot order, exactly as the plain ops' moe (spec §2.5).
  for (int64_t i = 0; i < a.n_rows; ++i) {
    float* oi = out + i * d;
    for (int64_t s = 0; s < k; ++s) {
      const float wt = a.weights[i * k + s];
      const float* ys = y_.data() + (i * k + s) * d;
      if (s == 0) {
        for (int64_t c = 0; c < d; ++c) oi[c] = wt * ys[c];
      } else {
        for (int64_t c = 0; c < d; ++c) oi[c] += wt * ys[c];
      }
    }
  }
  if (trace_ != nullptr) {
    const int64_t t_exit = trace_->now_us();
    trace_->complete("experts", "cpu", t_enter, t_exit - t_enter,
                     {{"layer", layer}, {"pass", int64_t(pass_)}, {"rows", a.n_rows}});
  }
  return Status::success();
}

}  // namespace tandem
