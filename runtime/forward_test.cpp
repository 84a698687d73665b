#include "runtime/forward.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>

#include "cpu/reference/forward.h"
#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

struct Fixture {
  test::TempDir dir;
  Model model;
  explicit Fixture(DType dt) : model(load(dir, dt)) {}
  static Model load(const test::TempDir& d, DType dt) {
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = dt;
    auto m = testing::make_and_load(mo, d / "m.gguf");
    REQUIRE(m.ok());
    return std::move(*m);
  }
};

// Records the order of events: routing and attention per layer.
struct OrderLog {
  std::vector<std::string> events;
};

class RecordingOps final : public ForwardOps {
 public:
  RecordingOps(OrderLog& log) : log_(log), inner_(make_cpu_ops()) {}
  std::string_view name() const override { return "recording"; }
  Status mul_mat(const TensorView& w, const float* x, int64_t m, float* y) override { return inner_->mul_mat(w, x, m, y); }
  Status get_rows(const TensorView& w, const int32_t* ids, int64_t m, float* y) override {
    return inner_->get_rows(w, ids, m, y);
  }
  void rms_norm(const float* x, const float* w, int64_t m, int64_t n, float eps, float* y) override {
    inner_->rms_norm(x, w, m, n, eps, y);
  }
  void rope_neox(float* x, const int32_t* pos, int64_t m, int64_t nh, int64_t hd, int64_t n_rot, float base) override {
    inner_->rope_neox(x, pos, m, nh, hd, n_rot, base);
  }
  void attention(const float* q, const int32_t* pos, int64_t m, int64_t nh, const KvLayerView& kv, float scale,
                 float* out) override {
    log_.events.push_back("attention");
    inner_->attention(q, pos, m, nh, kv, scale, out);
  }
  Status moe(const MoeArgs& a, float* out, std::span<uint64_t> active) override { return inner_->moe(a, out, active); }

 private:
  OrderLog& log_;
  std::unique_ptr<ForwardOps> inner_;
};

class RecordingObserver final : public ForwardObserver {
 public:
  explicit RecordingObserver(OrderLog& log) : log_(log) {}
  void on_routing(uint32_t layer, std::span<const int32_t> positions, std::span<const int32_t> ids,
                  std::span<const float> weights) override {
    log_.events.push_back("routing " + std::to_string(layer));
    routing.push_back({layer, {positions.begin(), positions.end()}, {ids.begin(), ids.end()}, {weights.begin(), weights.end()}});
  }
  void on_expert_gate_activity(uint32_t layer, uint32_t, uint64_t n_active, uint64_t n_total) override {
    if (active.size() <= layer) active.resize(layer + 1, {0, 0});
    active[layer].first += n_active;
    active[layer].second += n_total;
  }
  struct Routing {
    uint32_t layer;
    std::vector<int32_t> positions, ids;
    std::vector<float> weights;
  };
  std::vector<Routing> routing;
  std::vector<std::pair<uint64_t, uint64_t>> active;

 private:
  OrderLog& log_;
};

}  // namespace

TEST_CASE("Forward: logits bit-identical for 1, 2 and 3 threads", "[forward]") {
  for (DType dt : {DType::f32, DType::q4_0, DType::q8_0}) {
    Fixture fx(dt);
    const auto tokens = testing::random_tokens(19, fx.model.shape().n_vocab, 5);
    std::vector<std::vector<float>> out;
    for (int nt : {1, 2, 3}) {
      auto fwd = Forward::create(fx.model.shape(), fx.model.weights(), {8, nt});
      REQUIRE(fwd.ok());
      auto kv = KvCache::create(fx.model.shape(), {32, 8, DType::f16});
      REQUIRE(kv.ok());
      auto l = testing::eval_in_steps(**fwd, *kv, tokens, tokens.size());
      REQUIRE(l.ok());
      out.push_back(std::move(*l));
    }
    INFO("dtype " << dtype_name(dt));
    for (size_t i = 1; i < out.size(); ++i) {
      REQUIRE(out[i].size() == out[0].size());
      CHECK(std::memcmp(out[i].data(), out[0].data(), out[0].size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("Forward: an observer (routing on its own) and none (router fused with K, V, Q) give the same bits",
          "[forward]") {
  for (DType dt : {DType::f32, DType::q4_0}) {
    Fixture fx(dt);
    const auto tokens = testing::random_tokens(11, fx.model.shape().n_vocab, 7);
    std::vector<std::vector<float>> out;
    for (bool observed : {false, true}) {
      ForwardObserver quiet;  // hears everything, does nothing
      auto fwd = Forward::create(fx.model.shape(), fx.model.weights(), {8, 2});
      REQUIRE(fwd.ok());
      if (observed) (*fwd)->set_observer(&quiet);
      auto kv = KvCache::create(fx.model.shape(), {32, 8, DType::f16});
      REQUIRE(kv.ok());
      // All rows' logits of a prompt in ubatches of 8 and 3; then a prompt whose last layer
      // routes only its last row; then single tokens.
      auto l = testing::eval_in_steps(**fwd, *kv, tokens, 8);
      REQUIRE(l.ok());
      std::vector<float> logits;
      kv->clear();
      REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(tokens).first(9), LogitsRows::last, logits).ok());
      l->insert(l->end(), logits.begin(), logits.end());
      for (size_t t = 9; t < tokens.size(); ++t) {
        REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(tokens).subspan(t, 1), LogitsRows::last, logits).ok());
        l->insert(l->end(), logits.begin(), logits.end());
      }
      out.push_back(std::move(*l));
    }
    INFO("dtype " << dtype_name(dt));
    REQUIRE(out[1].size() == out[0].size());
    CHECK(std::memcmp(out[1].data(), out[0].data(), out[0].size() * sizeof(float)) == 0);
  }
}

TEST_CASE("Forward: routing reaches the observer before attention and matches the reference", "[forward]") {
  Fixture fx(DType::f32);
  const ModelShape& s = fx.model.shape();
  const auto tokens = testing::random_tokens(12, s.n_vocab, 9);
  OrderLog log;
  RecordingObserver obs(log);
  auto fwd = Forward::create(s, fx.model.weights(), {512, 2}, std::make_unique<RecordingOps>(log));
  REQUIRE(fwd.ok());
  (*fwd)->set_observer(&obs);
  auto kv = KvCache::create(s, {32, 512, DType::f32});
  REQUIRE(kv.ok());
  std::vector<float> logits;
  REQUIRE((*fwd)->eval(*kv, tokens, LogitsRows::all, logits).ok());

  // routing il, then attention (of layer il), for every layer in order.
  REQUIRE(log.events.size() == 2 * s.n_layer);
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    CHECK(log.events[2 * il] == "routing " + std::to_string(il));
    CHECK(log.events[2 * il + 1] == "attention");
  }

  cpu::reference::ForwardTrace trace;
  std::vector<float> ref;
  REQUIRE(cpu::reference::forward(s, fx.model.weights(), tokens, ref, &trace).ok());
  CHECK(test::nmse(logits, ref) < 1e-10);
  const size_t k = s.n_expert_used;
  REQUIRE(obs.routing.size() == s.n_layer);
  for (const auto& r : obs.routing) {
    REQUIRE(r.positions.size() == tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t) {
      CHECK(r.positions[t] == static_cast<int32_t>(t));
      const auto& want = trace.routing[r.layer][t];
      std::vector<int32_t> got_ids(r.ids.begin() + static_cast<ptrdiff_t>(t * k),
                                   r.ids.begin() + static_cast<ptrdiff_t>((t + 1) * k));
      std::vector<int32_t> want_ids = want.experts;
      std::sort(got_ids.begin(), got_ids.end());  // routing compared as sets
      std::sort(want_ids.begin(), want_ids.end());
      CHECK(got_ids == want_ids);
      float wsum = 0.0f;
      for (size_t j = 0; j < k; ++j) wsum += r.weights[t * k + j];
      CHECK(wsum == Approx(1.0f).epsilon(1e-5));
    }
  }
  // Gate activity: every routed (row, slot) counts n_ff_exp gates; the active share matches
  // the reference's per-token fractions (f32 weights: the same signs up to rounding at 0).
  REQUIRE(obs.active.size() == s.n_layer);
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    CHECK(obs.active[il].second == tokens.size() * k * s.n_ff_exp);
    double ref_frac = 0.0;
    for (float f : trace.gate_active_fraction[il]) ref_frac += f;
    ref_frac /= static_cast<double>(tokens.size());
    const double got = static_cast<double>(obs.active[il].first) / static_cast<double>(obs.active[il].second);
    CHECK(got == Approx(ref_frac).margin(1e-3));
  }
}

TEST_CASE("Forward: last-row logits equal the last row of all logits; the last layer routes only that row",
          "[forward]") {
  Fixture fx(DType::q4_0);
  const ModelShape& s = fx.model.shape();
  const auto tokens = testing::random_tokens(10, s.n_vocab, 2);
  OrderLog log;
  RecordingObserver obs(log);
  auto fwd = Forward::create(s, fx.model.weights(), {4, 2});
  REQUIRE(fwd.ok());
  auto kv = KvCache::create(s, {32, 4, DType::f16});
  REQUIRE(kv.ok());
  std::vector<float> all, last;
  REQUIRE((*fwd)->eval(*kv, tokens, LogitsRows::all, all).ok());
  kv->clear();
  (*fwd)->set_observer(&obs);
  REQUIRE((*fwd)->eval(*kv, tokens, LogitsRows::last, last).ok());
  REQUIRE(last.size() == s.n_vocab);
  CHECK(std::equal(last.begin(), last.end(), all.end() - s.n_vocab));
  CHECK(kv->n_past() == tokens.size());
  // Ubatches of 4: 4 + 4 + 2. The last layer of the first two routes nothing; of the third, only
  // position 9.
  size_t last_layer_calls = 0;
  for (const auto& r : obs.routing) {
    if (r.layer + 1 != s.n_layer) continue;
    ++last_layer_calls;
    CHECK(r.positions == std::vector<int32_t>{9});
  }
  CHECK(last_layer_calls == 1);
}

TEST_CASE("Forward: bad input gives errors and leaves the cache as it was", "[forward]") {
  Fixture fx(DType::q8_0);
  const ModelShape& s = fx.model.shape();
  auto fwd = Forward::create(s, fx.model.weights(), {8, 1});
  REQUIRE(fwd.ok());
  auto kv = KvCache::create(s, {16, 8, DType::f16});
  REQUIRE(kv.ok());
  std::vector<float> logits;
  const std::vector<int32_t> ok_tokens = testing::random_tokens(10, s.n_vocab, 1);
  REQUIRE((*fwd)->eval(*kv, ok_tokens, LogitsRows::last, logits).ok());

  const Status empty = (*fwd)->eval(*kv, {}, LogitsRows::last, logits);
  CHECK(empty.code() == ErrorCode::invalid_argument);
  const std::vector<int32_t> bad = {1, 2, static_cast<int32_t>(s.n_vocab)};
  const Status oob = (*fwd)->eval(*kv, bad, LogitsRows::last, logits);
  CHECK(oob.code() == ErrorCode::invalid_argument);
  CHECK(oob.message().find("index 2") != std::string::npos);
  const Status neg = (*fwd)->eval(*kv, std::vector<int32_t>{-1}, LogitsRows::last, logits);
  CHECK(neg.code() == ErrorCode::invalid_argument);
  const Status full = (*fwd)->eval(*kv, ok_tokens, LogitsRows::last, logits);
  CHECK(full.code() == ErrorCode::invalid_argument);
  CHECK(full.message().find("context of 16 (-c)") != std::string::npos);
  CHECK(kv->n_past() == 10);

  CHECK(Forward::create(s, fx.model.weights(), {0, 1}).status().code() == ErrorCode::invalid_argument);
  CHECK(Forward::create(s, fx.model.weights(), {8, -1}).status().code() == ErrorCode::invalid_argument);
}
