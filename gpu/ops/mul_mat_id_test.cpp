// Conformance: mul_mat_id (ggml_mul_mat_id for m tokens) for every dtype, with b broadcast over
// the slots (gate/up) or one row per slot (down); moe_sum; and the whole prompt-form expert FFN
// chained on the device (top_k -> mul_mat_id gate/up -> reglu -> mul_mat_vec_id down with
// n_slots = k*m -> moe_sum) against an f64 reference. Row counts below / at / above the
// 64-invocation workgroup, odd sizes. Validation layer on; zero messages required.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>

#include "gpu/ops/moe_sum.h"
#include "gpu/ops/mul_mat_id.h"
#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/ops/reglu.h"
#include "gpu/ops/top_k.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/variants.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

constexpr double k_tol = 1e-10;  // same bits dequantized both sides; f32 vs f64 accumulation

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

std::vector<int32_t> random_ids(int64_t n, int64_t n_expert, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_expert));
  return ids;
}

TEST_CASE("mul_mat_id matches ggml_mul_mat_id for every dtype", "[gpu][moe][mul_mat_id]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  struct Shape {
    int64_t ncols, nrows, n_expert, n_used, m;
  };
  const Shape shapes[] = {
      {32, 1, 1, 1, 1}, {96, 33, 5, 4, 3}, {64, 64, 4, 2, 17}, {160, 65, 7, 3, 5}};
  for (DType t : {DType::f32, DType::f16, DType::q8_0, DType::q4_0}) {
    const auto variants = testing::variants_or_warn(
        fx.device->caps(), ops::mul_mat_id_variants(*fx.device, t), {ops::ShaderVariant::subgroup},
        fmt::format("mul_mat_id_{}_f32", dtype_name(t)));
    for (ops::ShaderVariant variant : variants) {
      for (const Shape& sh : shapes) {
        for (bool broadcast : {true, false}) {
          const int64_t n_b1 = broadcast ? 1 : sh.n_used;
          const auto seed = static_cast<uint32_t>(sh.ncols + sh.nrows * 3 + sh.m * 11 +
                                                  static_cast<int>(t) + broadcast);
          const auto w = testing::random_weights(t, sh.ncols, sh.nrows * sh.n_expert, seed);
          const auto ids = random_ids(sh.n_used * sh.m, sh.n_expert, seed + 1);
          const auto b = testing::random_f32(static_cast<size_t>(sh.ncols * n_b1 * sh.m), seed + 2);
          const auto expected =
              testing::ref_mul_mat_id(t, w, sh.ncols, sh.nrows, ids, sh.n_used, b, n_b1);
          Buffer wb = make(fx, w.data(), w.size(), "ffn_gate_exps");
          Buffer bb = make(fx, b.data(), b.size() * 4, "b");
          Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
          Buffer db = make(fx, nullptr, expected.size() * 4, "dst");
          REQUIRE(fx.rec->begin().ok());
          const Status s =
              ops::mul_mat_id(*fx.rec, t, wb.slice(), sh.ncols, sh.nrows, sh.n_expert, ib.slice(),
                              sh.n_used, sh.m, bb.slice(), n_b1, db.slice(), variant);
          INFO(s.message());
          REQUIRE(s.ok());
          REQUIRE(fx.rec->submit_and_wait().ok());
          const double err = test::nmse(testing::read_f32(db, expected.size()), expected);
          INFO(fmt::format("{} {} [{}, {}, {}] n_used={} m={} n_b1={} nmse={:.3g}", dtype_name(t),
                           ops::shader_variant_name(variant), sh.ncols, sh.nrows, sh.n_expert,
                           sh.n_used, sh.m, n_b1, err));
          REQUIRE(err < k_tol);
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("mul_mat_id: invalid ids give NaN rows; bad shapes are rejected",
          "[gpu][moe][mul_mat_id]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const auto w = testing::random_weights(DType::q4_0, 32, 3 * 2, 1);
  const std::vector<int32_t> ids = {1, 2, -1, 0};  // n_used 2, m 2; ids 2 and -1 are out of range
  const auto b = testing::random_f32(32 * 2, 2);
  Buffer wb = make(fx, w.data(), w.size(), "w");
  Buffer bb = make(fx, b.data(), b.size() * 4, "b");
  Buffer ib = make(fx, ids.data(), ids.size() * 4, "ids");
  Buffer db = make(fx, nullptr, 3 * 4 * 4, "dst");
  REQUIRE(fx.rec->begin().ok());
  REQUIRE(ops::mul_mat_id(*fx.rec, DType::q4_0, wb.slice(), 32, 3, 2, ib.slice(), 2, 2, bb.slice(),
                          1, db.slice())
              .ok());
  CHECK(ops::mul_mat_id(*fx.rec, DType::q4_0, wb.slice(), 32, 3, 2, ib.slice(), 2, 2, bb.slice(), 3,
                        db.slice())
            .code() == ErrorCode::invalid_argument);  // n_b1 neither 1 nor n_used
  CHECK(ops::mul_mat_id(*fx.rec, DType::q4_0, wb.slice(), 32, 3, 3, ib.slice(), 2, 2, bb.slice(), 1,
                        db.slice())
            .code() == ErrorCode::invalid_argument);  // weights hold 2 experts
  CHECK(ops::mul_mat_id(*fx.rec, DType::bf16, wb.slice(), 32, 3, 2, ib.slice(), 2, 2, bb.slice(), 1,
                        db.slice())
            .code() == ErrorCode::unsupported);
  REQUIRE(fx.rec->submit_and_wait().ok());
  const auto out = testing::read_f32(db, 12);
  for (size_t i = 0; i < out.size(); ++i) {
    INFO(i);
    REQUIRE(std::isnan(out[i]) == (i / 3 == 1 || i / 3 == 2));
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("moe_sum weights and sums the slots of each token", "[gpu][moe][moe_sum]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  for (int64_t n_embd : {1, 255, 256, 257, 1536}) {
    for (int64_t k : {1, 6}) {
      for (int64_t m : {1, 3, 17}) {
        const auto seed = static_cast<uint32_t>(n_embd + k * 5 + m * 17);
        const auto eo = testing::random_f32(static_cast<size_t>(n_embd * k * m), seed);
        const auto w = testing::random_f32(static_cast<size_t>(k * m), seed + 1, 0.f, 1.f);
        std::vector<float> expected(static_cast<size_t>(n_embd * m));
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t c = 0; c < n_embd; ++c) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j)
              s += static_cast<double>(w[r * k + j]) * eo[(r * k + j) * n_embd + c];
            expected[static_cast<size_t>(r * n_embd + c)] = static_cast<float>(s);
          }
        }
        Buffer eb = make(fx, eo.data(), eo.size() * 4, "expert_out");
        Buffer wb = make(fx, w.data(), w.size() * 4, "weights");
        Buffer db = make(fx, nullptr, expected.size() * 4, "dst");
        REQUIRE(fx.rec->begin().ok());
        const Status s = ops::moe_sum(*fx.rec, eb.slice(), wb.slice(), n_embd, k, m, db.slice());
        INFO(s.message());
        REQUIRE(s.ok());
        REQUIRE(fx.rec->submit_and_wait().ok());
        const double err = test::nmse(testing::read_f32(db, expected.size()), expected);
        INFO(fmt::format("n_embd={} k={} m={} nmse={:.3g}", n_embd, k, m, err));
        REQUIRE(err < k_tol);
      }
    }
  }
  Buffer b = make(fx, nullptr, 4096, "any");
  REQUIRE(fx.rec->begin().ok());
  CHECK(ops::moe_sum(*fx.rec, b.slice(0, 1024), b.slice(2048, 64), 64, 2, 2, b.slice(512, 512))
            .code() == ErrorCode::invalid_argument);  // dst overlaps expert_out
  REQUIRE(fx.rec->submit_and_wait().ok());
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("prompt-form expert FFN chained on the device matches the reference", "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const DType t = DType::q8_0;
  const int64_t n_embd = 96, n_ff = 64, n_expert = 8, k = 3, m = 5;
  const auto router_logits = testing::random_f32(static_cast<size_t>(n_expert * m), 41, -3.f, 3.f);
  const auto x = testing::random_f32(static_cast<size_t>(n_embd * m), 42);
  const auto gate = testing::random_weights(t, n_embd, n_ff * n_expert, 43);
  const auto up = testing::random_weights(t, n_embd, n_ff * n_expert, 44);
  const auto down = testing::random_weights(t, n_ff, n_embd * n_expert, 45);

  const auto route =
      testing::ref_top_k(static_cast<uint32_t>(ExpertGating::sigmoid), router_logits, n_expert, k);
  const auto g = testing::ref_mul_mat_id(t, gate, n_embd, n_ff, route.ids, k, x, 1);
  const auto u = testing::ref_mul_mat_id(t, up, n_embd, n_ff, route.ids, k, x, 1);
  std::vector<float> h(g.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = std::max(g[i], 0.f) * u[i];
  const auto d = testing::ref_mul_mat_id(t, down, n_ff, n_embd, route.ids, k, h, k);
  std::vector<float> expected(static_cast<size_t>(n_embd * m));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n_embd; ++c) {
      double s = 0;
      for (int64_t j = 0; j < k; ++j)
        s += static_cast<double>(route.weights[r * k + j]) * d[(r * k + j) * n_embd + c];
      expected[static_cast<size_t>(r * n_embd + c)] = static_cast<float>(s);
    }
  }

  Buffer lb = make(fx, router_logits.data(), router_logits.size() * 4, "router_logits");
  Buffer xb = make(fx, x.data(), x.size() * 4, "attn_out_norm");
  Buffer gw = make(fx, gate.data(), gate.size(), "ffn_gate_exps");
  Buffer uw = make(fx, up.data(), up.size(), "ffn_up_exps");
  Buffer dw = make(fx, down.data(), down.size(), "ffn_down_exps");
  Buffer ids = make(fx, nullptr, static_cast<size_t>(k * m) * 4, "ids");
  Buffer wts = make(fx, nullptr, static_cast<size_t>(k * m) * 4, "weights");
  Buffer gb = make(fx, nullptr, g.size() * 4, "gate_out");
  Buffer ub = make(fx, nullptr, u.size() * 4, "up_out");
  Buffer db = make(fx, nullptr, d.size() * 4, "down_out");
  Buffer out = make(fx, nullptr, expected.size() * 4, "ffn_out");
  REQUIRE(fx.rec->begin().ok());
  REQUIRE(ops::top_k(*fx.rec, ExpertGating::sigmoid, lb.slice(), n_expert, m, k, ids.slice(),
                     wts.slice())
              .ok());
  REQUIRE(ops::mul_mat_id(*fx.rec, t, gw.slice(), n_embd, n_ff, n_expert, ids.slice(), k, m,
                          xb.slice(), 1, gb.slice())
              .ok());
  REQUIRE(ops::mul_mat_id(*fx.rec, t, uw.slice(), n_embd, n_ff, n_expert, ids.slice(), k, m,
                          xb.slice(), 1, ub.slice())
              .ok());
  REQUIRE(ops::reglu(*fx.rec, gb.slice(), ub.slice(), n_ff * k * m, gb.slice()).ok());
  REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, dw.slice(), n_ff, n_embd, n_expert, ids.slice(), k * m,
                              gb.slice(), false, db.slice())
              .ok());
  REQUIRE(ops::moe_sum(*fx.rec, db.slice(), wts.slice(), n_embd, k, m, out.slice()).ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  std::vector<int32_t> got(static_cast<size_t>(k * m));
  REQUIRE(ids.read(got.data(), got.size() * 4, 0).ok());
  REQUIRE(got == route.ids);  // random logits: no ties
  const double err = test::nmse(testing::read_f32(out, expected.size()), expected);
  INFO(fmt::format("nmse={:.3g}", err));
  REQUIRE(err < 1e-9);  // router weights differ from the f64 reference by a few f32 ulps
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
