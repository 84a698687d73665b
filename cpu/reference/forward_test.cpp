// Whole forward pass on tiny models built here from random f32 tensors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <vector>

#include "cpu/quants.h"
#include "cpu/reference/forward.h"
#include "support/test_support.h"

using namespace tandem;
using namespace tandem::cpu::reference;

namespace {

struct F32Tensor {
  std::vector<float> data;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};
};

struct F32Layer {
  F32Tensor attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate_inp, ffn_gate_exps,
      ffn_up_exps,
      ffn_down_exps;  // ffn_down_exps always in the standard layout [n_ff, d, nE]
};

// The f32 master copy of a tiny model; `build` turns it into views in a chosen dtype/layout.
struct TinySpec {
  ModelShape shape;
  F32Tensor token_embd, output_norm;
  std::vector<F32Layer> layers;
};

// Owns the bytes the views point at.
struct TinyModel {
  ModelShape shape;
  ModelWeights w;
  std::deque<std::vector<uint8_t>> store;
};

F32Tensor random_tensor(std::array<int64_t, 4> ne, std::mt19937& rng, float mean, float sd) {
  std::normal_distribution<float> nd(mean, sd);
  F32Tensor t;
  t.ne = ne;
  t.data.resize(static_cast<size_t>(ne[0] * ne[1] * ne[2] * ne[3]));
  for (auto& x : t.data) x = nd(rng);
  return t;
}

ModelShape tiny_shape(uint32_t n_layer, uint32_t n_expert, uint32_t n_expert_used,
                      ExpertGating gating, bool swa) {
  ModelShape s;
  s.n_vocab = 50;
  s.n_ctx_train = 64;
  s.n_embd = 32;
  s.n_layer = n_layer;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_embd_head_k = 8;
  s.n_embd_head_v = 8;
  s.n_rot = 8;
  s.n_expert = n_expert;
  s.n_expert_used = n_expert_used;
  s.n_ff_exp = 64;  // != n_embd, so the two ffn_down_exps layouts differ in shape
  s.rms_norm_eps = 1e-6f;
  s.rope_freq_base = 10000.0f;
  s.rope_freq_base_swa = 500.0f;
  s.gating = gating;
  s.swa = swa;  // layer 0 full + NoPE, layers 1..3 SWA + RoPE (spec §2.4)
  s.n_swa = swa ? 3 : 0;
  s.tied_output = true;
  return s;
}

TinySpec make_spec(const ModelShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t d = s.n_embd, nq = s.n_embd_q(), nk = s.n_embd_k_gqa(), nv = s.n_embd_v_gqa();
  const int64_t ff = s.n_ff_exp, nE = s.n_expert;
  const float sd_d = 1.0f / std::sqrt(static_cast<float>(d));
  TinySpec spec;
  spec.shape = s;
  spec.token_embd = random_tensor({d, s.n_vocab, 1, 1}, rng, 0.0f, 1.0f);
  spec.output_norm = random_tensor({d, 1, 1, 1}, rng, 1.0f, 0.1f);
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    F32Layer L;
    L.attn_norm = random_tensor({d, 1, 1, 1}, rng, 1.0f, 0.1f);
    L.attn_q = random_tensor({d, nq, 1, 1}, rng, 0.0f, 2.0f * sd_d);  // sharp enough scores
    L.attn_k = random_tensor({d, nk, 1, 1}, rng, 0.0f, 2.0f * sd_d);
    L.attn_v = random_tensor({d, nv, 1, 1}, rng, 0.0f, sd_d);
    L.attn_output =
        random_tensor({nq, d, 1, 1}, rng, 0.0f, 1.0f / std::sqrt(static_cast<float>(nq)));
    L.ffn_norm = random_tensor({d, 1, 1, 1}, rng, 1.0f, 0.1f);
    L.ffn_gate_inp = random_tensor({d, nE, 1, 1}, rng, 0.0f, 3.0f * sd_d);
    L.ffn_gate_exps = random_tensor({d, ff, nE, 1}, rng, 0.0f, sd_d);
    L.ffn_up_exps = random_tensor({d, ff, nE, 1}, rng, 0.0f, sd_d);
    L.ffn_down_exps =
        random_tensor({ff, d, nE, 1}, rng, 0.0f, 1.0f / std::sqrt(static_cast<float>(ff)));
    spec.layers.push_back(std::move(L));
  }
  return spec;
}

// Stores `t` (f32) as `dtype` and returns a contiguous view of it.
TensorView put(TinyModel& m, const F32Tensor& t, DType dtype) {
  const size_t row_bytes = dtype_row_size(dtype, t.ne[0]);
  const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
  auto& bytes = m.store.emplace_back(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const Status st = cpu::quantize_row(dtype, &t.data[static_cast<size_t>(r * t.ne[0])],
                                        &bytes[r * row_bytes], t.ne[0]);
    REQUIRE(st.ok());
  }
  return TensorView::contiguous(bytes.data(), dtype, t.ne);
}

F32Tensor transposed_down(const F32Tensor& down) {
  const int64_t ff = down.ne[0], d = down.ne[1], nE = down.ne[2];
  F32Tensor t{std::vector<float>(down.data.size(), 0.0f), {d, ff, nE, 1}};
  for (int64_t e = 0; e < nE; ++e)
    for (int64_t o = 0; o < d; ++o)
      for (int64_t j = 0; j < ff; ++j)
        t.data[(e * ff + j) * d + o] = down.data[(e * d + o) * ff + j];
  return t;
}

// Matrices in `dtype`; norms and the router stay f32 (as in every SmallThinker file).
// Tied: `output` views token_embd, as the loader does.
TinyModel build(const TinySpec& spec, DType dtype = DType::f32,
                DownLayout layout = DownLayout::standard) {
  TinyModel m;
  m.shape = spec.shape;
  m.shape.down_layout = layout;
  m.w.token_embd = put(m, spec.token_embd, dtype);
  m.w.output_norm = put(m, spec.output_norm, DType::f32);
  m.w.output = m.w.token_embd;
  for (const F32Layer& L : spec.layers) {
    LayerWeights lw;
    lw.attn_norm = put(m, L.attn_norm, DType::f32);
    lw.attn_q = put(m, L.attn_q, dtype);
    lw.attn_k = put(m, L.attn_k, dtype);
    lw.attn_v = put(m, L.attn_v, dtype);
    lw.attn_output = put(m, L.attn_output, dtype);
    lw.ffn_norm = put(m, L.ffn_norm, DType::f32);
    lw.ffn_gate_inp = put(m, L.ffn_gate_inp, DType::f32);
    lw.ffn_gate_exps = put(m, L.ffn_gate_exps, dtype);
    lw.ffn_up_exps = put(m, L.ffn_up_exps, dtype);
    lw.ffn_down_exps =
        put(m, layout == DownLayout::standard ? L.ffn_down_exps : transposed_down(L.ffn_down_exps),
            dtype);
    m.w.layers.push_back(lw);
  }
  return m;
}

std::vector<float> run_forward(const TinyModel& m, const std::vector<int32_t>& tokens,
                               ForwardTrace* trace = nullptr) {
  std::vector<float> logits;
  const Status st = forward(m.shape, m.w, tokens, logits, trace);
  INFO(st.message());
  REQUIRE(st.ok());
  REQUIRE(logits.size() == tokens.size() * m.shape.n_vocab);
  return logits;
}

const std::vector<int32_t> k_tokens = {3, 17, 42, 0, 49, 17, 8};

// Independent plain helpers for the closed forms (double throughout).
std::vector<double> rmsnorm_d(const std::vector<double>& x, const std::vector<float>& w,
                              double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}
// y = W x for matrix e of an f32 tensor with ne = [in, out, ...].
std::vector<double> matvec_d(const F32Tensor& W, const std::vector<double>& x, int64_t e = 0) {
  const int64_t in = W.ne[0], out = W.ne[1];
  std::vector<double> y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) y[o] += double(W.data[(e * out + o) * in + i]) * x[i];
  return y;
}

}  // namespace

TEST_CASE("forward: causal, a prefix gives the same rows", "[reference][forward]") {
  for (ExpertGating g : {ExpertGating::sigmoid, ExpertGating::softmax}) {
    for (bool swa : {false, true}) {
      const TinyModel m = build(make_spec(tiny_shape(2, 4, 2, g, swa), 1234));
      ForwardTrace full_trace;
      const auto full = run_forward(m, k_tokens, &full_trace);
      REQUIRE(full_trace.routing.size() == 2);
      for (uint32_t il = 0; il < 2; ++il) {
        REQUIRE(full_trace.routing[il].size() == k_tokens.size());
        for (size_t t = 0; t < k_tokens.size(); ++t) {
          const TokenRouting& r = full_trace.routing[il][t];
          REQUIRE(r.experts.size() == 2);
          CHECK(r.experts[0] != r.experts[1]);
          CHECK(r.weights[0] >= r.weights[1]);
          CHECK(r.weights[0] + r.weights[1] == Approx(1.0f));
          const float frac = full_trace.gate_active_fraction[il][t];
          CHECK(frac > 0.0f);
          CHECK(frac < 1.0f);
        }
      }
      for (size_t n = 1; n < k_tokens.size(); ++n) {
        const std::vector<int32_t> prefix(k_tokens.begin(),
                                          k_tokens.begin() + static_cast<std::ptrdiff_t>(n));
        ForwardTrace trace;
        const auto part = run_forward(m, prefix, &trace);
        CHECK(std::equal(part.begin(), part.end(), full.begin()));
        for (uint32_t il = 0; il < 2; ++il)
          for (size_t t = 0; t < n; ++t)
            CHECK(trace.routing[il][t].experts == full_trace.routing[il][t].experts);
      }
      // And the last token does change the last row only (the model is not trivially constant).
      std::vector<int32_t> other = k_tokens;
      other.back() = 1;
      const auto changed = run_forward(m, other);
      const size_t V = m.shape.n_vocab;
      CHECK(std::equal(changed.begin(), changed.end() - static_cast<std::ptrdiff_t>(V),
                       full.begin()));
      CHECK(!std::equal(changed.end() - static_cast<std::ptrdiff_t>(V), changed.end(),
                        full.end() - static_cast<std::ptrdiff_t>(V)));
    }
  }
}

TEST_CASE("forward: SWA changes what a late token sees", "[reference][forward]") {
  // Same weights and layer pattern (layer 0 full + NoPE, layer 1 SWA + RoPE); only layer 1's
  // window differs: n_swa 3 vs 1000.
  TinySpec spec = make_spec(tiny_shape(2, 4, 2, ExpertGating::sigmoid, true), 99);
  const TinyModel narrow = build(spec);
  TinyModel wide = build(spec);
  wide.shape.n_swa = 1000;
  const auto a = run_forward(narrow, k_tokens);
  const auto b = run_forward(wide, k_tokens);
  const size_t V = spec.shape.n_vocab;
  // Positions 0..2 see at most 3 keys: identical. Position 3 on sees fewer keys in `narrow`.
  CHECK(std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(3 * V), b.begin()));
  CHECK(!std::equal(a.begin() + static_cast<std::ptrdiff_t>(3 * V),
                    a.begin() + static_cast<std::ptrdiff_t>(4 * V),
                    b.begin() + static_cast<std::ptrdiff_t>(3 * V)));
}

TEST_CASE("forward: one layer, zero attention output reduces to a closed form",
          "[reference][forward]") {
  // x0 = E[tok]; attention adds 0; the router reads the RAW x0 (not attn_norm(x0)); experts
  // see f = rmsnorm(x0) * ffn_norm; x1 = x0 + sum_s w_s down_e(relu(gate_e f) * up_e f);
  // logits = token_embd (tied) rmsnorm(x1) * output_norm. With one expert w = p / p = 1.
  struct Case {
    uint32_t n_expert, n_used;
  };
  for (const Case c : {Case{1, 1}, Case{4, 2}, Case{4, 4}}) {
    for (ExpertGating g : {ExpertGating::sigmoid, ExpertGating::softmax}) {
      TinySpec spec = make_spec(tiny_shape(1, c.n_expert, c.n_used, g, false), 77);
      std::fill(spec.layers[0].attn_output.data.begin(), spec.layers[0].attn_output.data.end(),
                0.0f);
      const TinyModel m = build(spec);
      ForwardTrace trace;
      const auto logits = run_forward(m, k_tokens, &trace);
      const F32Layer& L = spec.layers[0];
      const int64_t d = spec.shape.n_embd, V = spec.shape.n_vocab, ff = spec.shape.n_ff_exp;
      std::vector<float> want;
      for (size_t t = 0; t < k_tokens.size(); ++t) {
        std::vector<double> x(spec.token_embd.data.begin() + k_tokens[t] * d,
                              spec.token_embd.data.begin() + (k_tokens[t] + 1) * d);
        // Router: probabilities over all experts, top-k by sorting, renormalised.
        const auto lg = matvec_d(L.ffn_gate_inp, x);
        std::vector<double> p(lg.size());
        double z = 0;
        for (double l : lg) z += std::exp(l);
        for (size_t e = 0; e < p.size(); ++e)
          p[e] = g == ExpertGating::sigmoid ? 1.0 / (1.0 + std::exp(-lg[e])) : std::exp(lg[e]) / z;
        std::vector<int32_t> sel(p.size());
        for (size_t e = 0; e < sel.size(); ++e) sel[e] = static_cast<int32_t>(e);
        std::sort(sel.begin(), sel.end(), [&](int32_t i, int32_t j) { return p[i] > p[j]; });
        sel.resize(c.n_used);
        double psum = 0;
        for (int32_t e : sel) psum += p[e];

        const auto f = rmsnorm_d(x, L.ffn_norm.data, 1e-6);
        int active = 0;
        std::vector<double> moe(static_cast<size_t>(d), 0.0);
        for (size_t s = 0; s < sel.size(); ++s) {
          const auto gv = matvec_d(L.ffn_gate_exps, f, sel[s]),
                     uv = matvec_d(L.ffn_up_exps, f, sel[s]);
          std::vector<double> a(static_cast<size_t>(ff));
          for (int64_t j = 0; j < ff; ++j) {
            a[j] = std::max(gv[j], 0.0) * uv[j];
            active += gv[j] > 0;
          }
          const auto y = matvec_d(L.ffn_down_exps, a, sel[s]);
          for (int64_t i = 0; i < d; ++i) moe[i] += p[sel[s]] / psum * y[i];
          CHECK(trace.routing[0][t].weights[s] == Approx(p[sel[s]] / psum).epsilon(1e-6));
        }
        for (int64_t i = 0; i < d; ++i) x[i] += moe[i];
        const auto logit = matvec_d(spec.token_embd, rmsnorm_d(x, spec.output_norm.data, 1e-6));
        for (int64_t v = 0; v < V; ++v) want.push_back(static_cast<float>(logit[v]));
        CHECK(trace.routing[0][t].experts == sel);
        CHECK(trace.gate_active_fraction[0][t] ==
              Approx(static_cast<double>(active) / (ff * c.n_used)));
      }
      INFO("n_expert " << c.n_expert << ", n_expert_used " << c.n_used);
      CHECK(test::nmse(logits, want) < 1e-10);
      CHECK(test::max_abs_diff(logits, want) < 1e-4);
    }
  }
}

TEST_CASE("forward: one token through attention reduces to a closed form (GQA value copy)",
          "[reference][forward]") {
  // T = 1: softmax over a single key is 1, so head h outputs v of kv head h / 2, rope or not.
  TinySpec spec = make_spec(tiny_shape(1, 1, 1, ExpertGating::sigmoid, false), 55);
  const TinyModel m = build(spec);
  const F32Layer& L = spec.layers[0];
  const int64_t d = spec.shape.n_embd, hd = 8;
  const int32_t tok = 42;
  const auto logits = run_forward(m, {tok});
  std::vector<double> x(spec.token_embd.data.begin() + tok * d,
                        spec.token_embd.data.begin() + (tok + 1) * d);
  const auto v = matvec_d(L.attn_v, rmsnorm_d(x, L.attn_norm.data, 1e-6));  // 2 kv heads of 8
  std::vector<double> o(4 * hd);
  for (int h = 0; h < 4; ++h)
    for (int i = 0; i < hd; ++i) o[h * hd + i] = v[(h / 2) * hd + i];
  const auto attn = matvec_d(L.attn_output, o);
  for (int64_t i = 0; i < d; ++i) x[i] += attn[i];
  const auto f = rmsnorm_d(x, L.ffn_norm.data, 1e-6);
  const auto gv = matvec_d(L.ffn_gate_exps, f), uv = matvec_d(L.ffn_up_exps, f);
  std::vector<double> a(gv.size());
  for (size_t j = 0; j < a.size(); ++j) a[j] = std::max(gv[j], 0.0) * uv[j];
  const auto y = matvec_d(L.ffn_down_exps, a);
  for (int64_t i = 0; i < d; ++i) x[i] += y[i];
  const auto want_d = matvec_d(spec.token_embd, rmsnorm_d(x, spec.output_norm.data, 1e-6));
  const std::vector<float> want(want_d.begin(), want_d.end());
  CHECK(test::nmse(logits, want) < 1e-10);
}

TEST_CASE("forward: transposed and standard ffn_down_exps give the same logits",
          "[reference][forward]") {
  const TinySpec spec = make_spec(tiny_shape(2, 4, 2, ExpertGating::sigmoid, true), 4321);
  const auto std_logits = run_forward(build(spec, DType::f32, DownLayout::standard), k_tokens);
  const auto tr_logits = run_forward(build(spec, DType::f32, DownLayout::transposed), k_tokens);
  double max_abs = 0;
  for (float l : std_logits) max_abs = std::max(max_abs, std::fabs(double(l)));
  CHECK(test::max_abs_diff(tr_logits, std_logits) <= 1e-5 * max_abs);
  // The layout must match the shape's claim: a standard tensor under `transposed` is rejected.
  TinyModel wrong = build(spec, DType::f32, DownLayout::standard);
  wrong.shape.down_layout = DownLayout::transposed;
  std::vector<float> logits;
  const Status st = forward(wrong.shape, wrong.w, k_tokens, logits);
  CHECK(st.code() == ErrorCode::invalid_argument);
  CHECK(st.message().find("blk.0.ffn_down_exps") != std::string::npos);
}

// The f32 spec with every tensor that build() quantizes replaced by its dtype round trip.
TinySpec round_trip(TinySpec spec, DType dtype) {
  auto rt = [&](F32Tensor& t) {
    const size_t row_bytes = dtype_row_size(dtype, t.ne[0]);
    std::vector<uint8_t> q(row_bytes);
    for (size_t r = 0; r < t.data.size() / static_cast<size_t>(t.ne[0]); ++r) {
      float* row = &t.data[r * static_cast<size_t>(t.ne[0])];
      REQUIRE(cpu::quantize_row(dtype, row, q.data(), t.ne[0]).ok());
      cpu::dequantize_row(dtype, q.data(), row, t.ne[0]);
    }
  };
  rt(spec.token_embd);
  for (F32Layer& L : spec.layers)
    for (F32Tensor* t : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate_exps,
                         &L.ffn_up_exps, &L.ffn_down_exps})
      rt(*t);
  return spec;
}

TEST_CASE("forward: q8_0 / q4_0 weights stay close to f32", "[reference][forward]") {
  // Bounds in normalised MSE of all logits vs the f32 model: q8_0 < 1e-3, q4_0 < 0.2 (seen:
  // ~2e-4 and ~0.1; q4_0's per-weight error is ~(127/8)^2 times q8_0's, and it compounds over
  // the tied q4_0 embedding/output, attention and routing flips).
  const TinySpec spec = make_spec(tiny_shape(2, 4, 2, ExpertGating::sigmoid, true), 2024);
  const auto ref = run_forward(build(spec), k_tokens);
  for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
    const double e8 = test::nmse(run_forward(build(spec, DType::q8_0, layout), k_tokens), ref);
    const double e4 = test::nmse(run_forward(build(spec, DType::q4_0, layout), k_tokens), ref);
    INFO("nmse q8_0 = " << e8 << ", q4_0 = " << e4);
    CHECK(e8 < 1e-3);
    CHECK(e4 < 0.2);
    CHECK(e8 < e4);   // more bits, less error
    CHECK(e8 > 0.0);  // the quantized weights were really used
  }
  // The quantized model computes exactly what the f32 model of its dequantized weights does:
  // all of the difference above is quantization noise, none of it addressing.
  for (DType dt : {DType::q8_0, DType::q4_0, DType::f16, DType::bf16}) {
    const auto quantized = run_forward(build(spec, dt), k_tokens);
    const auto dequantized = run_forward(build(round_trip(spec, dt)), k_tokens);
    CHECK(quantized == dequantized);
  }
}

TEST_CASE("forward: bad input is an error, never a crash", "[reference][forward]") {
  const TinyModel m = build(make_spec(tiny_shape(2, 4, 2, ExpertGating::sigmoid, false), 5));
  std::vector<float> logits;
  CHECK(forward(m.shape, m.w, std::vector<int32_t>{}, logits).code() ==
        ErrorCode::invalid_argument);
  CHECK(forward(m.shape, m.w, std::vector<int32_t>{1, 50}, logits).code() ==
        ErrorCode::invalid_argument);
  CHECK(forward(m.shape, m.w, std::vector<int32_t>{-1}, logits).code() ==
        ErrorCode::invalid_argument);

  auto expect_bad = [&](ModelShape s, ModelWeights w, std::string_view needle) {
    const Status st = forward(s, w, std::vector<int32_t>{1, 2}, logits);
    INFO(st.message());
    CHECK(st.code() == ErrorCode::invalid_argument);
    CHECK(st.message().find(needle) != std::string::npos);
  };
  {
    ModelWeights w = m.w;
    w.layers[1].attn_k.ne[1] = 8;
    expect_bad(m.shape, w, "blk.1.attn_k");
  }
  {
    ModelWeights w = m.w;
    w.layers[0].ffn_up_exps.data = nullptr;
    expect_bad(m.shape, w, "blk.0.ffn_up_exps");
  }
  {
    ModelWeights w = m.w;
    w.layers.pop_back();
    expect_bad(m.shape, w, "n_layer");
  }
  {
    ModelShape s = m.shape;
    s.gating = ExpertGating::none;
    expect_bad(s, m.w, "expert_gating_func");
  }
  {
    ModelShape s = m.shape;
    s.n_head_kv = 3;
    expect_bad(s, m.w, "n_head_kv");
  }
  {
    ModelShape s = m.shape;
    s.swa = true;
    s.n_swa = 0;
    expect_bad(s, m.w, "n_swa");
  }
  {
    ModelWeights w = m.w;
    w.output.dtype = DType::q8_0;  // ne[0] = 32 fits the block, but the strides no longer do
    w.output.ne[0] = 16;
    expect_bad(m.shape, w, "output");
  }
}
