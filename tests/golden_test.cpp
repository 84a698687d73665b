// Golden tests: the runtime's forward pass (runtime/forward.h, plain CPU ops, KV cache)
// against the plain reference cpu::reference::forward on tiny models of every layout the
// model maker writes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/reference/forward.h"
#include "runtime/forward.h"
#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

struct Variant {
  const char* name;
  DType dtype;
  bool transpose_down;
  bool tied;
  ExpertGating gating;
  // NMSE bound of the logits against the reference. f32/f16 weights: both sides compute in
  // f32 from the same weights, the differences are summation order (measured ~1.3e-14).
  // q8_0/q4_0: the runtime quantizes activations to q8_0 before every quantized mul_mat, as
  // ggml does, while the reference keeps them f32; measured 1.7e-5 (q8_0) and 1.5e-5 (q4_0,
  // over the tokens whose routing agrees), per token up to 4.3e-5: bounds 1e-4.
  double bound;
};

constexpr Variant k_variants[] = {
    {"f32", DType::f32, false, true, ExpertGating::sigmoid, 1e-10},
    {"f16", DType::f16, false, true, ExpertGating::sigmoid, 1e-10},
    {"q8_0", DType::q8_0, false, true, ExpertGating::sigmoid, 1e-4},
    {"q4_0", DType::q4_0, false, true, ExpertGating::sigmoid, 1e-4},
    {"f32 transposed down", DType::f32, true, true, ExpertGating::sigmoid, 1e-10},
    {"q4_0 transposed down", DType::q4_0, true, true, ExpertGating::sigmoid, 1e-4},
    {"f32 untied", DType::f32, false, false, ExpertGating::sigmoid, 1e-10},
    {"f32 softmax gating", DType::f32, false, true, ExpertGating::softmax, 1e-10},
    {"q4_0 untied softmax", DType::q4_0, false, false, ExpertGating::softmax, 1e-4},
};

std::vector<int32_t> sorted(std::vector<int32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The routing the runtime reported, by (layer, position).
class RoutingLog final : public ForwardObserver {
 public:
  RoutingLog(uint32_t n_layer, size_t n_pos, uint32_t k) : k_(k), ids_(n_layer, std::vector<int32_t>(n_pos * k, -1)) {}
  void on_routing(uint32_t layer, std::span<const int32_t> positions, std::span<const int32_t> ids,
                  std::span<const float>) override {
    for (size_t i = 0; i < positions.size(); ++i)
      std::copy_n(ids.begin() + static_cast<ptrdiff_t>(i * k_), k_,
                  ids_[layer].begin() + static_cast<ptrdiff_t>(static_cast<size_t>(positions[i]) * k_));
  }
  std::vector<int32_t> set(uint32_t layer, size_t pos) const {
    const auto b = ids_[layer].begin() + static_cast<ptrdiff_t>(pos * k_);
    return sorted(std::vector<int32_t>(b, b + k_));
  }

 private:
  size_t k_;
  std::vector<std::vector<int32_t>> ids_;
};

int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());  // first max
}

}  // namespace

TEST_CASE("golden: runtime logits match the reference on tiny models", "[golden]") {
  test::TempDir dir;
  for (const Variant& v : k_variants) {
    INFO("variant " << v.name);
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = v.dtype;
    mo.transpose_down = v.transpose_down;
    mo.tied = v.tied;
    mo.gating = v.gating;
    mo.n_ff_exp = 96;  // != n_embd, which the transposed layout needs
    auto model = testing::make_and_load(mo, dir / "m.gguf");
    INFO(model.status().message());
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    REQUIRE(s.down_layout == (v.transpose_down ? DownLayout::transposed : DownLayout::standard));
    REQUIRE(s.tied_output == v.tied);
    REQUIRE(s.gating == v.gating);

    const auto prompt = testing::random_tokens(24, s.n_vocab, 1234);
    cpu::reference::ForwardTrace trace;
    std::vector<float> expected;
    REQUIRE(cpu::reference::forward(s, model->weights(), prompt, expected, &trace).ok());
    auto fwd = Forward::create(s, model->weights(), {7, 2});
    REQUIRE(fwd.ok());
    RoutingLog routing(s.n_layer, prompt.size(), s.n_expert_used);
    (*fwd)->set_observer(&routing);
    auto kv = KvCache::create(s, {64, 7, DType::f32});
    REQUIRE(kv.ok());
    auto got = testing::eval_in_steps(**fwd, *kv, prompt, prompt.size());
    REQUIRE(got.ok());
    (*fwd)->set_observer(nullptr);

    // Routing compared as sets per (layer, token). A token whose routing differs anywhere is
    // a near-tie flipped by the activation rounding (quantized variants only); it is left out
    // of the logits comparison, and there may be only a few.
    std::vector<bool> flipped(prompt.size(), false);
    int n_flips = 0;
    for (uint32_t il = 0; il < s.n_layer; ++il) {
      for (size_t t = 0; t < prompt.size(); ++t) {
        if (routing.set(il, t) != sorted(trace.routing[il][t].experts)) {
          flipped[t] = true;
          ++n_flips;
        }
      }
    }
    INFO("routing flips " << n_flips);
    CHECK(n_flips <= (v.dtype == DType::f32 || v.dtype == DType::f16 ? 0 : 2));
    std::vector<float> a, b;
    for (size_t t = 0; t < prompt.size(); ++t) {
      if (flipped[t]) continue;
      a.insert(a.end(), got->begin() + static_cast<ptrdiff_t>(t * s.n_vocab), got->begin() + static_cast<ptrdiff_t>((t + 1) * s.n_vocab));
      b.insert(b.end(), expected.begin() + static_cast<ptrdiff_t>(t * s.n_vocab), expected.begin() + static_cast<ptrdiff_t>((t + 1) * s.n_vocab));
    }
    const double e = test::nmse(a, b);
    INFO("nmse " << e);
    CHECK(e < v.bound);

    // Greedy continuation of 32 tokens: the runtime decodes token by token from its cache; at
    // every step the reference recomputes the runtime's whole prefix and must pick the same
    // token. Quantized variants may take the other side of a near-tie (reference logits within
    // k_tie of each other, ~5x the logit noise of q8_0 activations), at most twice.
    std::vector<int32_t> seq(prompt.begin(), prompt.begin() + 8);
    std::vector<float> logits;
    kv->clear();
    REQUIRE((*fwd)->eval(*kv, seq, LogitsRows::last, logits).ok());
    const bool exact = v.dtype == DType::f32 || v.dtype == DType::f16;
    constexpr float k_tie = 0.1f;
    int n_ties = 0;
    for (int i = 0; i < 32; ++i) {
      const int32_t ours = argmax(logits);
      REQUIRE(cpu::reference::forward(s, model->weights(), seq, expected).ok());
      const auto ref_row = std::span<const float>(expected).subspan((seq.size() - 1) * s.n_vocab, s.n_vocab);
      const int32_t theirs = argmax(ref_row);
      if (ours != theirs) {
        INFO("step " << i << ": runtime " << ours << " (reference logit " << ref_row[static_cast<size_t>(ours)]
                     << "), reference " << theirs << " (" << ref_row[static_cast<size_t>(theirs)] << ")");
        CHECK(!exact);
        CHECK(ref_row[static_cast<size_t>(ours)] >= ref_row[static_cast<size_t>(theirs)] - k_tie);
        ++n_ties;
      }
      seq.push_back(ours);
      if (i + 1 < 32) REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(&seq.back(), 1), LogitsRows::last, logits).ok());
    }
    CHECK(n_ties <= 2);
  }
}

TEST_CASE("golden: sliding window past 4096 positions matches the reference", "[golden][swa]") {
  // Two layers: layer 0 full attention + NoPE, layer 1 sliding window (4096) + RoPE. The
  // reference is O(T^2) per layer; with this shape 4200 tokens take about a second.
  test::TempDir dir;
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.dtype = DType::f32;
  mo.n_layer = 2;
  mo.n_embd = 32;
  mo.n_head = 2;
  mo.n_head_kv = 2;
  mo.n_expert = 4;
  mo.n_ff_exp = 32;
  mo.n_vocab = 320;
  mo.swa = true;
  auto model = testing::make_and_load(mo, dir / "swa.gguf");
  INFO(model.status().message());
  REQUIRE(model.ok());
  const ModelShape& s = model->shape();
  REQUIRE((s.swa && s.n_swa == 4096 && !s.is_swa(0) && s.is_swa(1) && !s.use_rope(0) && s.use_rope(1)));
  const size_t n = 4200;
  const size_t nv = s.n_vocab;
  const auto tokens = testing::random_tokens(n, s.n_vocab, 77);

  std::vector<float> expected;
  REQUIRE(cpu::reference::forward(s, model->weights(), tokens, expected).ok());
  auto fwd = Forward::create(s, model->weights(), {64, 2});
  REQUIRE(fwd.ok());
  auto kv = KvCache::create(s, {n, 64, DType::f32});
  REQUIRE(kv.ok());
  REQUIRE(kv->layer(0).n_cells == n);
  REQUIRE(kv->layer(1).n_cells == 4096 + 64);  // the ring really wraps before 4200
  auto got = testing::eval_in_steps(**fwd, *kv, tokens, n);
  REQUIRE(got.ok());
  auto row = [nv](const std::vector<float>& l, size_t t) { return std::span<const float>(l.data() + t * nv, nv); };
  // RoPE angles reach 4200 rad: both sides compute them in f64, the rest is f32 rounding.
  for (size_t t : {size_t{0}, size_t{1000}, size_t{4094}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{4150},
                   size_t{4199}}) {
    INFO("position " << t);
    CHECK(test::nmse(row(*got, t), row(expected, t)) < 1e-10);
  }

  // The same weights with the window made larger than the sequence (same NoPE/RoPE layout):
  // identical below 4096 — a query at p < 4096 sees every earlier key either way — and
  // different from 4096 on, where the window starts to drop the oldest keys.
  ModelShape no_window = s;
  no_window.n_swa = 1u << 20;
  auto fwd_nw = Forward::create(no_window, model->weights(), {512, 2});
  REQUIRE(fwd_nw.ok());
  auto kv_nw = KvCache::create(no_window, {n, 512, DType::f32});
  REQUIRE(kv_nw.ok());
  auto nw = testing::eval_in_steps(**fwd_nw, *kv_nw, tokens, n);
  REQUIRE(nw.ok());
  for (size_t t : {size_t{0}, size_t{2048}, size_t{4095}}) {
    INFO("position " << t);
    CHECK(test::max_abs_diff(row(*got, t), row(*nw, t)) == 0.0);
  }
  for (size_t t : {size_t{4096}, size_t{4097}, size_t{4199}}) {
    INFO("position " << t);
    CHECK(test::max_abs_diff(row(*got, t), row(*nw, t)) > 0.0);
  }

  // The file without the sliding_window key: every layer full attention with RoPE. Layer 0
  // then rotates where the swa file's does not, so only position 0 (rotation by angle 0 is the
  // identity, exactly) agrees.
  mo.swa = false;
  auto plain = testing::make_and_load(mo, dir / "plain.gguf");
  REQUIRE(plain.ok());
  REQUIRE((!plain->shape().swa && plain->shape().use_rope(0)));
  auto fwd_p = Forward::create(plain->shape(), plain->weights(), {64, 2});
  REQUIRE(fwd_p.ok());
  auto kv_p = KvCache::create(plain->shape(), {64, 64, DType::f32});
  REQUIRE(kv_p.ok());
  const std::span<const int32_t> head(tokens.data(), 64);
  auto p = testing::eval_in_steps(**fwd_p, *kv_p, head, head.size());
  REQUIRE(p.ok());
  CHECK(test::max_abs_diff(row(*p, 0), row(*got, 0)) == 0.0);
  CHECK(test::nmse(row(*p, 1), row(*got, 1)) > 1e-8);
  CHECK(test::nmse(row(*p, 63), row(*got, 63)) > 1e-8);
}
