// Conformance: mul_mat_vec_id (expert GEMV over router ids) for every dtype and variant, and
// the dense ReGLU expert FFN composed from it (gate/up with a shared x, reglu, down with one
// x per slot) against an f64 reference. Validation layer on; zero messages required.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>

#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/ops/mul_mat_vec_t_id.h"
#include "gpu/ops/quantize_q8_1.h"
#include "gpu/ops/reglu.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/reference_q8.h"
#include "gpu/testing/variants.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

constexpr double k_tol = 1e-10;  // same bits dequantized both sides; f32 vs f64 accumulation
// intdot: against the reference over the CPU-quantized activations (reference_q8.h), so the
// f32-vs-f64 bound holds. fp16: f16 products and 8-term sums (mul_mat_vec_test.cpp: NMSE ~2e-7,
// a single cancelling row up to ~2e-5).
double tolerance(ops::ShaderVariant v) {
  return v == ops::ShaderVariant::fp16 ? 1e-4 : k_tol;
}
constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::q8_0, DType::q4_0};

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

// dst[s] = W[ids[s]] x_s, x_s = x (broadcast) or x row s.
std::vector<float> ref_id(DType t, const std::vector<uint8_t>& w, int64_t k, int64_t rows,
                          const std::vector<int32_t>& ids, const std::vector<float>& x,
                          bool broadcast) {
  const size_t matrix = dtype_row_size(t, k) * static_cast<size_t>(rows);
  std::vector<float> out;
  for (size_t s = 0; s < ids.size(); ++s) {
    const std::vector<float> xs(x.begin() + (broadcast ? 0 : static_cast<int64_t>(s) * k),
                                x.begin() + (broadcast ? 0 : static_cast<int64_t>(s) * k) + k);
    const auto y = testing::ref_mul_mat(t, w.data() + matrix * static_cast<size_t>(ids[s]),
                                        dtype_row_size(t, k), k, rows, xs, 1);
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

TEST_CASE("mul_mat_vec_id matches the reference for every dtype and variant", "[gpu][moe]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  using ops::ShaderVariant;
  const int64_t n_expert = 5;
  const std::vector<int32_t> ids = {3, 0, 4, 3};  // repeats allowed
  for (DType t : k_dtypes) {
    const auto variants = testing::variants_or_warn(
        fx.device->caps(), ops::mul_mat_vec_variants(*fx.device, t),
        t == DType::f16
            ? std::initializer_list<ShaderVariant>{ShaderVariant::subgroup, ShaderVariant::fp16}
        : t == DType::f32
            ? std::initializer_list<ShaderVariant>{ShaderVariant::subgroup}
            : std::initializer_list<ShaderVariant>{ShaderVariant::subgroup, ShaderVariant::intdot},
        fmt::format("mul_mat_vec_id_{}_f32", dtype_name(t)));
    for (auto variant : variants) {
      for (int64_t rows : {1, 33, 257}) {
        for (int64_t k : {32, 96, 37}) {  // 37: f32 / f16 tails (fp16 steps of 8)
          if (k % dtype_block_size(t) != 0) continue;
          for (bool broadcast : {true, false}) {
            const auto seed =
                static_cast<uint32_t>(rows * 13 + k + static_cast<int>(t) * 7 + broadcast);
            const auto w = testing::random_weights(t, k, rows * n_expert, seed);
            const auto x = testing::random_f32(
                static_cast<size_t>(k) * (broadcast ? 1 : ids.size()), seed + 1);
            const bool intdot = variant == ShaderVariant::intdot;
            const auto expected =
                ref_id(t, w, k, rows, ids, intdot ? testing::q8_values(x) : x, broadcast);
            Buffer wb = make(fx, w.data(), w.size(), "ffn_up_exps");
            Buffer xb = make(fx, x.data(), x.size() * 4, "x");
            Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
            Buffer db = make(fx, nullptr, expected.size() * 4, "dst");
            const uint64_t q_bytes =
                ops::q8_1_bytes(k, broadcast ? 1 : static_cast<int64_t>(ids.size()));
            Buffer qb = make(fx, nullptr, std::max<uint64_t>(q_bytes, 4), "q8_1");
            REQUIRE(fx.rec->begin().ok());
            ops::MulMatVecIdOptions o;
            o.variant = variant;
            if (intdot) o.q8_1 = qb.slice();
            const Status s = ops::mul_mat_vec_id(*fx.rec, t, wb.slice(), k, rows, n_expert,
                                                 ib.slice(), static_cast<int64_t>(ids.size()),
                                                 xb.slice(), broadcast, db.slice(), o);
            INFO(s.message());
            REQUIRE(s.ok());
            REQUIRE(fx.rec->submit_and_wait().ok());
            const double err = test::nmse(testing::read_f32(db, expected.size()), expected);
            INFO(fmt::format("{} {} rows={} k={} broadcast={} nmse={:.3g}", dtype_name(t),
                             ops::shader_variant_name(variant), rows, k, broadcast, err));
            REQUIRE(err < tolerance(variant));
          }
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("mul_mat_vec_id turns an out-of-range expert id into NaN, not a bad read", "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const auto w = testing::random_weights(DType::q4_0, 32, 6, 1);  // 2 experts of 3 rows
  const std::vector<float> x(32, 1.f);
  const std::vector<int32_t> ids = {1, 7, -1};
  Buffer wb = make(fx, w.data(), w.size(), "w");
  Buffer xb = make(fx, x.data(), x.size() * 4, "x");
  Buffer ib = make(fx, ids.data(), ids.size() * 4, "ids");
  Buffer db = make(fx, nullptr, 9 * 4, "dst");
  REQUIRE(fx.rec->begin().ok());
  REQUIRE(ops::mul_mat_vec_id(*fx.rec, DType::q4_0, wb.slice(), 32, 3, 2, ib.slice(), 3, xb.slice(),
                              true, db.slice())
              .ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  const auto out = testing::read_f32(db, 9);
  for (int i = 0; i < 3; ++i) CHECK(std::isfinite(out[i]));
  for (int i = 3; i < 9; ++i) CHECK(std::isnan(out[i]));
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("dense ReGLU expert FFN from mul_mat_vec_id + reglu matches the reference",
          "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  // SmallThinker-like miniature: n_embd 96, n_ff_exp 64, 6 experts, 3 used; standard down
  // layout [n_ff_exp, n_embd, n_expert].
  const int64_t n_embd = 96, n_ff = 64, n_expert = 6;
  const std::vector<int32_t> ids = {5, 1, 2};
  const auto n_used = static_cast<int64_t>(ids.size());
  for (DType t : k_dtypes) {
    const auto gate = testing::random_weights(t, n_embd, n_ff * n_expert, 21);
    const auto up = testing::random_weights(t, n_embd, n_ff * n_expert, 22);
    const auto down = testing::random_weights(t, n_ff, n_embd * n_expert, 23);
    const auto x = testing::random_f32(static_cast<size_t>(n_embd), 24);
    const auto g = ref_id(t, gate, n_embd, n_ff, ids, x, true);
    const auto u = ref_id(t, up, n_embd, n_ff, ids, x, true);
    std::vector<float> h(g.size());
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = static_cast<float>(std::max(0.0, static_cast<double>(g[i])) * u[i]);
    const auto expected = ref_id(t, down, n_ff, n_embd, ids, h, false);

    Buffer gb = make(fx, gate.data(), gate.size(), "ffn_gate_exps");
    Buffer ub = make(fx, up.data(), up.size(), "ffn_up_exps");
    Buffer dwb = make(fx, down.data(), down.size(), "ffn_down_exps");
    Buffer xb = make(fx, x.data(), x.size() * 4, "x");
    Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
    Buffer gout = make(fx, nullptr, static_cast<size_t>(n_ff * n_used) * 4, "gate_out");
    Buffer uout = make(fx, nullptr, static_cast<size_t>(n_ff * n_used) * 4, "up_out");
    Buffer yout = make(fx, nullptr, static_cast<size_t>(n_embd * n_used) * 4, "down_out");
    REQUIRE(fx.rec->begin().ok());
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, gb.slice(), n_embd, n_ff, n_expert, ib.slice(), n_used,
                                xb.slice(), true, gout.slice())
                .ok());
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, ub.slice(), n_embd, n_ff, n_expert, ib.slice(), n_used,
                                xb.slice(), true, uout.slice())
                .ok());
    REQUIRE(ops::reglu(*fx.rec, gout.slice(), uout.slice(), n_ff * n_used, gout.slice()).ok());
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, dwb.slice(), n_ff, n_embd, n_expert, ib.slice(), n_used,
                                gout.slice(), false, yout.slice())
                .ok());
    REQUIRE(fx.rec->submit_and_wait().ok());
    const double err = test::nmse(testing::read_f32(yout, expected.size()), expected);
    INFO(fmt::format("{} nmse={:.3g}", dtype_name(t), err));
    // h passes through f32 on the GPU and in the reference alike; allow for the two f32 GEMVs.
    REQUIRE(err < 1e-9);
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("ReLU-sparse down projection over transposed experts matches the reference",
          "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const int64_t n_expert = 4;
  const std::vector<int32_t> ids = {2, 0, 3};
  const auto n_slots = static_cast<int64_t>(ids.size());
  for (DType t : k_dtypes) {
    for (int64_t nout : {32, 96, 1536 + 32}) {  // below, above and far above the 64-wide workgroup
      for (int64_t nin : {1, 33, 64}) {
        const auto seed = static_cast<uint32_t>(nout * 3 + nin + static_cast<int>(t));
        // weights ne = [nout, nin, n_expert]: nin * n_expert rows of nout elements
        const auto w = testing::random_weights(t, nout, nin * n_expert, seed);
        auto h = testing::random_f32(static_cast<size_t>(nin * n_slots), seed + 1);
        for (size_t j = 0; j < h.size(); ++j) {
          if (j % 3 != 0) h[j] = 0.f;  // ReLU leaves most neurons at exactly zero
        }
        std::vector<float> expected(static_cast<size_t>(nout * n_slots));
        const size_t row = dtype_row_size(t, nout);
        for (int64_t s = 0; s < n_slots; ++s) {
          for (int64_t i = 0; i < nout; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < nin; ++j) {
              const uint8_t* r = w.data() + row * static_cast<size_t>(ids[s] * nin + j);
              acc += static_cast<double>(h[s * nin + j]) * testing::dequant(t, r, i);
            }
            expected[s * nout + i] = static_cast<float>(acc);
          }
        }
        Buffer wb = make(fx, w.data(), w.size(), "ffn_down_exps");
        Buffer hb = make(fx, h.data(), h.size() * 4, "h");
        Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
        Buffer db = make(fx, nullptr, expected.size() * 4, "dst");
        REQUIRE(fx.rec->begin().ok());
        const Status st = ops::mul_mat_vec_t_id(*fx.rec, t, wb.slice(), nout, nin, n_expert,
                                                ib.slice(), n_slots, hb.slice(), db.slice());
        INFO(st.message());
        REQUIRE(st.ok());
        REQUIRE(fx.rec->submit_and_wait().ok());
        const double err = test::nmse(testing::read_f32(db, expected.size()), expected);
        INFO(fmt::format("{} nout={} nin={} nmse={:.3g}", dtype_name(t), nout, nin, err));
        REQUIRE(err < k_tol);
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
