#include "runtime/forward_ops.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "cpu/quants.h"
#include "cpu/reference/ops.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A weight (ne = [k, n]) in `dt` made from random f32 values.
std::vector<uint8_t> make_weight(DType dt, int64_t k, int64_t n, uint32_t seed) {
  const auto f = randn(static_cast<size_t>(k * n), seed);
  std::vector<uint8_t> bytes(dtype_row_size(dt, k) * static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    REQUIRE(cpu::quantize_row(dt, f.data() + r * k, bytes.data() + static_cast<size_t>(r) * dtype_row_size(dt, k), k).ok());
  }
  return bytes;
}

}  // namespace

TEST_CASE("cpu ops: mul_mat matches the reference over dtypes and shapes with tails", "[forward_ops]") {
  auto ops = make_cpu_ops();
  // Bounds: f32/f16 weights are dotted in f32 (reference: f64), ~1e-14. Quantized weights
  // meet activations quantized to q8_0 (8 bits per block of 32): NMSE ~3e-5 of the result in
  // expectation (per-element rounding variance (amax/127)^2/12 over unit variance), but a
  // single row of 32 can reach 3e-3; so each shape gets 1e-2 (a wrong nibble order or scale
  // gives ~1) and all shapes of a dtype together get the tight bound.
  const struct {
    DType dt;
    double bound;
  } cases[] = {{DType::f32, 1e-12}, {DType::f16, 1e-12}, {DType::q8_0, 1e-4}, {DType::q4_0, 1e-4}};
  for (const auto& c : cases) {
    std::vector<float> all_y, all_ref;
    for (int64_t k : {32, 64, 96, 288}) {
      for (int64_t n : {1, 5, 17, 65}) {
        for (int64_t m : {1, 3}) {
          const auto wb = make_weight(c.dt, k, n, static_cast<uint32_t>(k * 131 + n));
          const TensorView w = TensorView::contiguous(wb.data(), c.dt, {k, n, 1, 1}, "w");
          const auto x = randn(static_cast<size_t>(k * m), static_cast<uint32_t>(n + 7));
          std::vector<float> y(static_cast<size_t>(m * n)), ref(y.size());
          REQUIRE(ops->mul_mat(w, x.data(), m, y.data()).ok());
          for (int64_t i = 0; i < m; ++i)
            for (int64_t o = 0; o < n; ++o)
              ref[static_cast<size_t>(i * n + o)] = cpu::reference::mul_mat_row(
                  w, o, 0, std::span<const float>(x.data() + i * k, static_cast<size_t>(k)));
          INFO(dtype_name(c.dt) << " k " << k << " n " << n << " m " << m);
          CHECK(test::nmse(y, ref) < std::max(c.bound, 1e-2));
          all_y.insert(all_y.end(), y.begin(), y.end());
          all_ref.insert(all_ref.end(), ref.begin(), ref.end());
        }
      }
    }
    INFO(dtype_name(c.dt) << " all shapes");
    CHECK(test::nmse(all_y, all_ref) < c.bound);
  }
}

TEST_CASE("cpu ops: rope_neox and rms_norm match the reference", "[forward_ops]") {
  auto ops = make_cpu_ops();
  const int64_t n_head = 3, hd = 16;
  for (int32_t pos : {0, 1, 17, 4095, 4200}) {
    auto x = randn(static_cast<size_t>(n_head * hd), static_cast<uint32_t>(pos + 1));
    auto ref = x;
    ops->rope_neox(x.data(), &pos, 1, n_head, hd, hd, 10000.0f);
    for (int64_t h = 0; h < n_head; ++h)
      cpu::reference::rope_neox(std::span<float>(ref.data() + h * hd, static_cast<size_t>(hd)), pos, static_cast<int>(hd),
                                10000.0f);
    INFO("pos " << pos);
    CHECK(test::nmse(x, ref) < 1e-12);
  }
  const int64_t n = 80;
  const auto x = randn(static_cast<size_t>(2 * n), 3);
  const auto w = randn(static_cast<size_t>(n), 4);
  std::vector<float> y(x.size()), ref(x.size());
  ops->rms_norm(x.data(), w.data(), 2, n, 1e-6f, y.data());
  for (int64_t i = 0; i < 2; ++i)
    cpu::reference::rms_norm(std::span<const float>(x.data() + i * n, n), w, 1e-6f, std::span<float>(ref.data() + i * n, n));
  CHECK(test::nmse(y, ref) < 1e-12);
}

TEST_CASE("cpu ops: moe matches the reference experts in both down layouts", "[forward_ops]") {
  auto ops = make_cpu_ops();
  // n_embd 512: the transposed down is split into two 256-column chunks; n_ff 96 is not a
  // multiple of the chunk.
  const int64_t d = 512, n_ff = 96, n_exp = 3, k = 2, rows = 3;
  for (DType dt : {DType::f32, DType::q4_0}) {
    for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
      const auto gb = make_weight(dt, d, n_ff * n_exp, 1);
      const auto ub = make_weight(dt, d, n_ff * n_exp, 2);
      const bool tr = layout == DownLayout::transposed;
      const auto db = tr ? make_weight(dt, d, n_ff * n_exp, 3) : make_weight(dt, n_ff, d * n_exp, 3);
      const TensorView gate = TensorView::contiguous(gb.data(), dt, {d, n_ff, n_exp, 1}, "gate");
      const TensorView up = TensorView::contiguous(ub.data(), dt, {d, n_ff, n_exp, 1}, "up");
      const TensorView down = tr ? TensorView::contiguous(db.data(), dt, {d, n_ff, n_exp, 1}, "down")
                                 : TensorView::contiguous(db.data(), dt, {n_ff, d, n_exp, 1}, "down");
      const auto x = randn(static_cast<size_t>(rows * d), 9);
      const std::vector<int32_t> ids = {2, 0, 0, 1, 1, 2};
      const std::vector<float> w = {0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
      MoeArgs a;
      a.gate_exps = &gate;
      a.up_exps = &up;
      a.down_exps = &down;
      a.down_layout = layout;
      a.n_embd = d;
      a.n_ff_exp = n_ff;
      a.n_expert = n_exp;
      a.n_expert_used = k;
      a.x = x.data();
      a.expert_ids = ids.data();
      a.weights = w.data();
      a.n_rows = rows;
      std::vector<float> out(static_cast<size_t>(rows * d));
      std::vector<uint64_t> active(static_cast<size_t>(n_exp), 0);
      REQUIRE(ops->moe(a, out.data(), active).ok());

      std::vector<float> ref(out.size(), 0.0f), y(static_cast<size_t>(d));
      std::vector<uint64_t> ref_active(static_cast<size_t>(n_exp), 0);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t s = 0; s < k; ++s) {
          const int32_t e = ids[static_cast<size_t>(i * k + s)];
          ref_active[static_cast<size_t>(e)] += static_cast<uint64_t>(cpu::reference::expert_reglu(
              gate, up, down, layout, e, std::span<const float>(x.data() + i * d, static_cast<size_t>(d)), y));
          for (int64_t c = 0; c < d; ++c) ref[static_cast<size_t>(i * d + c)] += w[static_cast<size_t>(i * k + s)] * y[static_cast<size_t>(c)];
        }
      }
      INFO(dtype_name(dt) << (tr ? " transposed" : " standard"));
      CHECK(test::nmse(out, ref) < (dt == DType::f32 ? 1e-12 : 1e-4));
      if (dt == DType::f32) CHECK(active == ref_active);  // same gate signs
      uint64_t total = 0;
      for (uint64_t v : active) total += v;
      CHECK(total > 0);
      CHECK(total < static_cast<uint64_t>(rows * k * n_ff));
    }
  }
}
