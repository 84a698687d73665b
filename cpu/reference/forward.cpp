#include "cpu/reference/forward.h"

#include <vector>

namespace tandem::cpu::reference {
namespace {

using Vec = std::vector<float>;

// A norm weight (1-D, f32 in every SmallThinker file, but any dtype reads) as floats.
Vec load_vector(const TensorView& t) {
  Vec v(static_cast<size_t>(t.ne[0]));
  get_row(t, 0, 0, v);
  return v;
}

std::span<float> row_of(Vec& m, int64_t r, int64_t cols) {
  return std::span<float>(m).subspan(static_cast<size_t>(r * cols), static_cast<size_t>(cols));
}

}  // namespace

Status forward(const ModelShape& shape, const ModelWeights& w, std::span<const int32_t> tokens,
               std::vector<float>& logits, ForwardTrace* trace) {
  if (tokens.empty()) return make_error(ErrorCode::invalid_argument, "forward: no tokens (T == 0)");
  TANDEM_RETURN_IF_ERROR(check_model(shape, w));
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || static_cast<uint32_t>(tokens[t]) >= shape.n_vocab)
      return make_error(ErrorCode::invalid_argument,
                        "forward: token {} at position {} is outside [0, n_vocab = {})", tokens[t],
                        t, shape.n_vocab);
  }

  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t d = shape.n_embd;
  const int64_t n_q = shape.n_embd_q();
  const int64_t n_k = shape.n_embd_k_gqa();
  const int64_t n_v = shape.n_embd_v_gqa();
  const int64_t n_o = static_cast<int64_t>(shape.n_head) * shape.n_embd_head_v;
  const int64_t k_used = shape.n_expert_used;

  if (trace) {
    trace->routing.assign(shape.n_layer, std::vector<TokenRouting>(static_cast<size_t>(T)));
    trace->gate_active_fraction.assign(shape.n_layer,
                                       std::vector<float>(static_cast<size_t>(T), 0.0f));
  }

  // x: (T, n_embd), the residual stream. No embedding scale (spec §1.1).
  Vec x(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t)
    get_row(w.token_embd, tokens[static_cast<size_t>(t)], 0, row_of(x, t, d));

  Vec h(static_cast<size_t>(d));
  Vec router_logits(shape.n_expert);
  Vec q(static_cast<size_t>(T * n_q)), k(static_cast<size_t>(T * n_k)),
      v(static_cast<size_t>(T * n_v));
  Vec o(static_cast<size_t>(T * n_o));
  Vec a(static_cast<size_t>(d)), y(static_cast<size_t>(d));
  std::vector<TokenRouting> routing(static_cast<size_t>(T));

  for (uint32_t il = 0; il < shape.n_layer; ++il) {
    const LayerWeights& L = w.layers[il];
    const Vec attn_norm = load_vector(L.attn_norm);
    const Vec ffn_norm = load_vector(L.ffn_norm);

    // Router on the raw layer input, before attn_norm (spec §2.2, pitfall 1).
    for (int64_t t = 0; t < T; ++t) {
      mul_mat_vec(L.ffn_gate_inp, 0, row_of(x, t, d), router_logits);
      auto r = route(shape.gating, router_logits, k_used);
      if (!r.ok()) return r.status().with_context(fmt::format("forward: layer {}", il));
      routing[static_cast<size_t>(t)] = std::move(r).value();
    }

    for (int64_t t = 0; t < T; ++t) {
      rms_norm(row_of(x, t, d), attn_norm, shape.rms_norm_eps, h);
      mul_mat_vec(L.attn_q, 0, h, row_of(q, t, n_q));
      mul_mat_vec(L.attn_k, 0, h, row_of(k, t, n_k));
      mul_mat_vec(L.attn_v, 0, h, row_of(v, t, n_v));
    }
    self_attention(shape, il, T, q, k, v, o);
    for (int64_t t = 0; t < T; ++t) {
      mul_mat_vec(L.attn_output, 0, row_of(o, t, n_o), a);
      auto xt = row_of(x, t, d);
      for (int64_t i = 0; i < d; ++i) xt[static_cast<size_t>(i)] += a[static_cast<size_t>(i)];
    }

    for (int64_t t = 0; t < T; ++t) {
      auto xt = row_of(x, t, d);
      rms_norm(xt, ffn_norm, shape.rms_norm_eps, h);
      const TokenRouting& rt = routing[static_cast<size_t>(t)];
      std::vector<double> moe(static_cast<size_t>(d), 0.0);
      int64_t active = 0;
      for (size_t s = 0; s < rt.experts.size(); ++s) {  // slot order, as upstream sums
        active += expert_reglu(L.ffn_gate_exps, L.ffn_up_exps, L.ffn_down_exps, shape.down_layout,
                               rt.experts[s], h, y);
        for (size_t i = 0; i < moe.size(); ++i) moe[i] += static_cast<double>(rt.weights[s]) * y[i];
      }
      for (size_t i = 0; i < moe.size(); ++i) xt[i] += static_cast<float>(moe[i]);
      if (trace) {
        trace->routing[il][static_cast<size_t>(t)] = rt;
        trace->gate_active_fraction[il][static_cast<size_t>(t)] = static_cast<float>(
            static_cast<double>(active) / static_cast<double>(k_used * shape.n_ff_exp));
      }
    }
  }

  const Vec output_norm = load_vector(w.output_norm);
  logits.assign(static_cast<size_t>(T) * shape.n_vocab, 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    rms_norm(row_of(x, t, d), output_norm, shape.rms_norm_eps, h);
    mul_mat_vec(w.output, 0, h, row_of(logits, t, shape.n_vocab));
  }
  return Status::success();
}

}  // namespace tandem::cpu::reference
