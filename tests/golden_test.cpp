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
  // NMSE bound of all logits against the reference. f32/f16/bf16 weights: both sides compute in
  // f32 from the same weights, the differences are summation order (measured < 1e-13).
  // q8_0/q4_0: the runtime quantizes activations to q8_0 before every quantized mul_mat, as
  // ggml does, while the reference keeps them f32; measured ~2e-6 (q8_0) and ~4e-6 (q4_0) on
  // these models, bounds with a 10x margin.
  double bound;
};

constexpr Variant k_variants[] = {
    {"f32", DType::f32, false, true, ExpertGating::sigmoid, 1e-10},
    {"f16", DType::f16, false, true, ExpertGating::sigmoid, 1e-10},
    {"q8_0", DType::q8_0, false, true, ExpertGating::sigmoid, 3e-5},
    {"q4_0", DType::q4_0, false, true, ExpertGating::sigmoid, 5e-5},
    {"f32 transposed down", DType::f32, true, true, ExpertGating::sigmoid, 1e-10},
    {"q4_0 transposed down", DType::q4_0, true, true, ExpertGating::sigmoid, 5e-5},
    {"f32 untied", DType::f32, false, false, ExpertGating::sigmoid, 1e-10},
    {"f32 softmax gating", DType::f32, false, true, ExpertGating::softmax, 1e-10},
    {"q4_0 untied softmax", DType::q4_0, false, false, ExpertGating::softmax, 5e-5},
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
    auto model = testing::make_and_load(mo, dir / "m.gguf");
    INFO(model.status().message());
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    REQUIRE(s.down_layout == (v.transpose_down ? DownLayout::transposed : DownLayout::standard));
    REQUIRE(s.tied_output == v.tied);
    REQUIRE(s.gating == v.gating);

    const auto prompt = testing::random_tokens(24, s.n_vocab, 1234);
    std::vector<float> expected;
    REQUIRE(cpu::reference::forward(s, model->weights(), prompt, expected).ok());
    auto fwd = Forward::create(s, model->weights(), {7, 2});
    REQUIRE(fwd.ok());
    auto kv = KvCache::create(s, {64, 7, DType::f32});
    REQUIRE(kv.ok());
    auto got = testing::eval_in_steps(**fwd, *kv, prompt, prompt.size());
    REQUIRE(got.ok());
    const double e = test::nmse(*got, expected);
    INFO("nmse " << e);
    CHECK(e < v.bound);

    // Greedy continuation of 32 tokens: the runtime decodes token by token from its cache, the
    // reference recomputes the whole prefix every step.
    std::vector<int32_t> seq(prompt.begin(), prompt.begin() + 8);
    std::vector<float> logits;
    kv->clear();
    REQUIRE((*fwd)->eval(*kv, seq, LogitsRows::last, logits).ok());
    std::vector<int32_t> ours;
    for (int i = 0; i < 32; ++i) {
      ours.push_back(argmax(logits));
      if (i + 1 < 32) REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(&ours.back(), 1), LogitsRows::last, logits).ok());
    }
    std::vector<int32_t> ref_seq = seq;
    std::vector<int32_t> theirs;
    for (int i = 0; i < 32; ++i) {
      REQUIRE(cpu::reference::forward(s, model->weights(), ref_seq, expected).ok());
      theirs.push_back(argmax(std::span<const float>(expected).subspan((ref_seq.size() - 1) * s.n_vocab, s.n_vocab)));
      ref_seq.push_back(theirs.back());
    }
    CHECK(ours == theirs);
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
