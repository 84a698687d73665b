// Conformance: mul_mat_vec_id (expert GEMV over router ids) for every dtype and variant, and
// the dense ReGLU expert FFN composed from it (gate/up with a shared x, reglu, down with one
// x per slot) against an f64 reference. Validation layer on; zero messages required.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

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

// Gates with the given share of inactive rows (0, ~0.6 or 1): inactive ones are negative,
// exact +0 / -0, or (one) NaN; active ones are positive, some tiny.
std::vector<float> make_gate(size_t n, int inactive_pct, uint32_t seed) {
  auto g = testing::random_f32(n, seed, 0.f, 1.f);
  for (size_t j = 0; j < n; ++j) {
    const bool inactive = inactive_pct == 100 || (inactive_pct > 0 && g[j] < 0.6f);
    if (!inactive) {
      g[j] = j % 13 == 0 ? 1e-30f : g[j] + 1e-6f;
    } else if (j % 7 == 0) {
      g[j] = 0.f;
    } else if (j % 11 == 0) {
      g[j] = -0.f;
    } else if (j == 5) {
      g[j] = std::nanf("");
    } else {
      g[j] = -g[j] - 1e-6f;
    }
  }
  return g;
}

TEST_CASE("ReLU-sparse mul_mat_vec_id equals the dense op where gate > 0 and is 0 elsewhere",
          "[gpu][moe]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  using ops::ShaderVariant;
  const int64_t n_expert = 5;
  const std::vector<int32_t> ids = {3, 0, 4, 3};
  const auto n_slots = static_cast<int64_t>(ids.size());
  constexpr int k_inactive_pct[] = {0, 60, 100};
  for (DType t : k_dtypes) {
    // Same variants as the dense op: every one has a _sparse twin in the build.
    for (auto variant : ops::mul_mat_vec_variants(*fx.device, t)) {
      for (int64_t rows : {1, 33, 257}) {
        // 64 invocations per row: below, at (64 values / 64 blocks) and above the workgroup's
        // stride; 37 an odd f32 / f16 width.
        for (int64_t k : {32, 37, 64, 2048, 2080}) {
          if (k % dtype_block_size(t) != 0 || (k >= 2048 && rows > 33)) continue;  // test time
          const bool broadcast = (rows + k) % 2 == 0;
          const auto seed = static_cast<uint32_t>(rows * 31 + k + static_cast<int>(t) * 5);
          const auto w = testing::random_weights(t, k, rows * n_expert, seed);
          const auto x =
              testing::random_f32(static_cast<size_t>(k) * (broadcast ? 1 : ids.size()), seed + 1);
          const auto n_out = static_cast<size_t>(rows * n_slots);
          const std::vector<float> sentinel(n_out, 12345.f);  // rows the shader fails to write
          Buffer wb = make(fx, w.data(), w.size(), "ffn_up_exps");
          Buffer xb = make(fx, x.data(), x.size() * 4, "x");
          Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
          Buffer qb =
              make(fx, nullptr, std::max<uint64_t>(ops::q8_1_bytes(k, broadcast ? 1 : n_slots), 4),
                   "q8_1");
          Buffer dense = make(fx, nullptr, n_out * 4, "dense");
          std::vector<std::vector<float>> gates;
          std::vector<Buffer> gbs, dbs;
          for (int pct : k_inactive_pct) {
            gates.push_back(make_gate(n_out, pct, seed + 2 + static_cast<uint32_t>(pct)));
            gbs.push_back(make(fx, gates.back().data(), n_out * 4, "gate"));
            dbs.push_back(make(fx, sentinel.data(), n_out * 4, "sparse"));
          }
          REQUIRE(fx.rec->begin().ok());
          ops::MulMatVecIdOptions o;
          o.variant = variant;
          if (variant == ShaderVariant::intdot) o.q8_1 = qb.slice();
          Status st = ops::mul_mat_vec_id(*fx.rec, t, wb.slice(), k, rows, n_expert, ib.slice(),
                                          n_slots, xb.slice(), broadcast, dense.slice(), o);
          INFO(st.message());
          REQUIRE(st.ok());
          o.q8_1_ready = true;  // the dense dispatch quantized x (intdot), as gate does for up
          for (size_t c = 0; c < gbs.size(); ++c) {
            o.skip_if_gate_le_zero = gbs[c].slice();
            st = ops::mul_mat_vec_id(*fx.rec, t, wb.slice(), k, rows, n_expert, ib.slice(), n_slots,
                                     xb.slice(), broadcast, dbs[c].slice(), o);
            INFO(st.message());
            REQUIRE(st.ok());
          }
          REQUIRE(fx.rec->submit_and_wait().ok());
          const auto want = testing::read_f32(dense, n_out);
          for (size_t c = 0; c < gbs.size(); ++c) {
            const auto got = testing::read_f32(dbs[c], n_out);
            size_t bad = 0, active = 0;
            for (size_t j = 0; j < n_out; ++j) {
              const bool on = gates[c][j] > 0.f;
              active += on;
              const bool ok = on ? std::memcmp(&got[j], &want[j], 4) == 0
                                 : std::bit_cast<uint32_t>(got[j]) == 0u;  // +0 exactly
              bad += !ok;
            }
            INFO(fmt::format("{} {} rows={} k={} broadcast={} inactive={}% ({} of {} active)",
                             dtype_name(t), ops::shader_variant_name(variant), rows, k, broadcast,
                             k_inactive_pct[c], active, n_out));
            REQUIRE(bad == 0);
          }
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("ReLU-sparse mul_mat_vec_id: bad ids stay NaN, bad gate slices are refused",
          "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const auto w = testing::random_weights(DType::q8_0, 32, 6, 3);  // 2 experts of 3 rows
  const std::vector<float> x(32, 1.f);
  const std::vector<int32_t> ids = {1, 7};
  const std::vector<float> gate = {1.f, -1.f, 0.f, 1.f, -1.f, 0.f};
  Buffer wb = make(fx, w.data(), w.size(), "w");
  Buffer xb = make(fx, x.data(), x.size() * 4, "x");
  Buffer ib = make(fx, ids.data(), ids.size() * 4, "ids");
  Buffer gb = make(fx, gate.data(), gate.size() * 4, "gate");
  Buffer db = make(fx, nullptr, 6 * 4, "dst");
  ops::MulMatVecIdOptions o;
  REQUIRE(fx.rec->begin().ok());
  o.skip_if_gate_le_zero = gb.slice(0, 5 * 4);  // one value short
  Status st = ops::mul_mat_vec_id(*fx.rec, DType::q8_0, wb.slice(), 32, 3, 2, ib.slice(), 2,
                                  xb.slice(), true, db.slice(), o);
  CHECK(st.code() == ErrorCode::invalid_argument);
  CHECK_THAT(st.message(), Catch::Contains("gate"));
  o.skip_if_gate_le_zero = db.slice();  // in place is a race in the shader
  st = ops::mul_mat_vec_id(*fx.rec, DType::q8_0, wb.slice(), 32, 3, 2, ib.slice(), 2, xb.slice(),
                           true, db.slice(), o);
  CHECK(st.code() == ErrorCode::invalid_argument);
  CHECK_THAT(st.message(), Catch::Contains("overlaps dst"));
  o.skip_if_gate_le_zero = gb.slice();
  REQUIRE(ops::mul_mat_vec_id(*fx.rec, DType::q8_0, wb.slice(), 32, 3, 2, ib.slice(), 2, xb.slice(),
                              true, db.slice(), o)
              .ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  const auto out = testing::read_f32(db, 6);
  CHECK(std::isfinite(out[0]));
  CHECK(out[1] == 0.f);
  CHECK(out[2] == 0.f);
  for (int i = 3; i < 6; ++i) CHECK(std::isnan(out[i]));  // id 7: NaN whatever the gate says
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

TEST_CASE("ReGLU expert FFN with the ReLU-sparse up gives the dense FFN's output bit for bit",
          "[gpu][moe]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  // As runtime/gpu_graph.cpp records one token: automatic variants, gate and up sharing one
  // q8_1 quantization, then reglu and either down layout.
  const int64_t n_embd = 96, n_ff = 160, n_expert = 6;
  const std::vector<int32_t> ids = {5, 1, 2};
  const auto n_used = static_cast<int64_t>(ids.size());
  const auto n_h = static_cast<size_t>(n_ff * n_used);
  const auto n_y = static_cast<size_t>(n_embd * n_used);
  for (DType t : k_dtypes) {
    const auto gate = testing::random_weights(t, n_embd, n_ff * n_expert, 31);
    const auto up = testing::random_weights(t, n_embd, n_ff * n_expert, 32);
    const auto down =
        testing::random_weights(t, n_ff, n_embd * n_expert, 33);  // [n_ff, n_embd, ne]
    const auto down_t =
        testing::random_weights(t, n_embd, n_ff * n_expert, 34);  // [n_embd, n_ff, ne]
    const auto x = testing::random_f32(static_cast<size_t>(n_embd), 35);
    Buffer gb = make(fx, gate.data(), gate.size(), "ffn_gate_exps");
    Buffer ub = make(fx, up.data(), up.size(), "ffn_up_exps");
    Buffer dwb = make(fx, down.data(), down.size(), "ffn_down_exps");
    Buffer dtb = make(fx, down_t.data(), down_t.size(), "ffn_down_exps_t");
    Buffer xb = make(fx, x.data(), x.size() * 4, "x");
    Buffer ib = make(fx, ids.data(), ids.size() * 4, "expert_ids");
    Buffer qb = make(fx, nullptr, ops::q8_1_bytes(n_embd, 1), "q8_1");
    Buffer gout = make(fx, nullptr, n_h * 4, "gate_out");
    Buffer hd = make(fx, nullptr, n_h * 4, "h_dense");
    Buffer hs = make(fx, nullptr, n_h * 4, "h_sparse");
    Buffer ud = make(fx, nullptr, n_h * 4, "up_dense");
    Buffer us = make(fx, nullptr, n_h * 4, "up_sparse");
    std::vector<Buffer> ys;
    for (int i = 0; i < 4; ++i) ys.push_back(make(fx, nullptr, n_y * 4, "down_out"));
    REQUIRE(fx.rec->begin().ok());
    ops::MulMatVecIdOptions go;
    go.q8_1 = qb.slice();
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, gb.slice(), n_embd, n_ff, n_expert, ib.slice(), n_used,
                                xb.slice(), true, gout.slice(), go)
                .ok());
    ops::MulMatVecIdOptions uo = go;
    uo.q8_1_ready = true;
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, ub.slice(), n_embd, n_ff, n_expert, ib.slice(), n_used,
                                xb.slice(), true, ud.slice(), uo)
                .ok());
    uo.skip_if_gate_le_zero = gout.slice();
    REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, ub.slice(), n_embd, n_ff, n_expert, ib.slice(), n_used,
                                xb.slice(), true, us.slice(), uo)
                .ok());
    REQUIRE(
        ops::reglu(*fx.rec, gout.slice(), ud.slice(), static_cast<int64_t>(n_h), hd.slice()).ok());
    REQUIRE(
        ops::reglu(*fx.rec, gout.slice(), us.slice(), static_cast<int64_t>(n_h), hs.slice()).ok());
    for (int i = 0; i < 2; ++i) {
      const gpu::BufferSlice h = (i == 0 ? hd : hs).slice();
      REQUIRE(ops::mul_mat_vec_id(*fx.rec, t, dwb.slice(), n_ff, n_embd, n_expert, ib.slice(),
                                  n_used, h, false, ys[i].slice())
                  .ok());
      REQUIRE(ops::mul_mat_vec_t_id(*fx.rec, t, dtb.slice(), n_embd, n_ff, n_expert, ib.slice(),
                                    n_used, h, ys[2 + i].slice())
                  .ok());
    }
    REQUIRE(fx.rec->submit_and_wait().ok());
    const auto g = testing::read_f32(gout, n_h);
    const size_t active =
        static_cast<size_t>(std::count_if(g.begin(), g.end(), [](float v) { return v > 0.f; }));
    INFO(fmt::format("{}: {} of {} neurons active", dtype_name(t), active, n_h));
    CHECK(active > 0);
    CHECK(active < n_h);
    CHECK(testing::read_f32(us, n_h) !=
          testing::read_f32(ud, n_h));  // the sparse form did skip rows
    CHECK(testing::read_f32(hs, n_h) == testing::read_f32(hd, n_h));
    CHECK(testing::read_f32(ys[1], n_y) == testing::read_f32(ys[0], n_y));
    CHECK(testing::read_f32(ys[3], n_y) == testing::read_f32(ys[2], n_y));
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
