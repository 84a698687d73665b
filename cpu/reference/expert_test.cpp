#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "cpu/quants.h"
#include "cpu/reference/ops.h"
#include "support/test_support.h"

using namespace tandem;
using namespace tandem::cpu::reference;

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// down_t[e][j][o] = down[e][o][j]: PowerInfer's transposed layout built from the standard one.
std::vector<float> transpose_down(const std::vector<float>& down, int64_t n_ff, int64_t d,
                                  int64_t nE) {
  std::vector<float> t(down.size());
  for (int64_t e = 0; e < nE; ++e)
    for (int64_t o = 0; o < d; ++o)
      for (int64_t j = 0; j < n_ff; ++j) t[(e * n_ff + j) * d + o] = down[(e * d + o) * n_ff + j];
  return t;
}

}  // namespace

TEST_CASE("expert_reglu: relu on the gate only, hand-made", "[reference][expert]") {
  // d = 2, n_ff = 2, one expert, x = [1, 0]: g = [1, -1], u = [-2, 5]
  // a = [relu(1) * -2, relu(-1) * 5] = [-2, 0] (negative up survives; closed gate kills 5)
  const std::vector<float> gate = {1, 0, -1, 0}, up = {-2, 0, 5, 0};
  const std::vector<float> down = {1, 1, 0.5f, 3};  // standard: rows o of n_ff
  const auto gv = TensorView::contiguous(gate.data(), DType::f32, {2, 2, 1, 1});
  const auto uv = TensorView::contiguous(up.data(), DType::f32, {2, 2, 1, 1});
  const auto dv = TensorView::contiguous(down.data(), DType::f32, {2, 2, 1, 1});
  std::vector<float> y(2);
  CHECK(expert_reglu(gv, uv, dv, DownLayout::standard, 0, std::vector<float>{1, 0}, y) == 1);
  CHECK(y[0] == -2.0f);  // 1 * -2 + 1 * 0
  CHECK(y[1] == -1.0f);  // 0.5 * -2 + 3 * 0
}

TEST_CASE("expert_reglu: standard and transposed down agree with a plain closed form",
          "[reference][expert]") {
  struct Dims {
    int64_t d, n_ff, nE;
  };
  for (const Dims dims : {Dims{1, 1, 1}, Dims{5, 7, 3}, Dims{16, 33, 2}, Dims{32, 32, 4}}) {
    const auto [d, n_ff, nE] = dims;
    const auto gate = random_vec(d * n_ff * nE, 1), up = random_vec(d * n_ff * nE, 2),
               down = random_vec(d * n_ff * nE, 3);
    const auto down_t = transpose_down(down, n_ff, d, nE);
    const auto gv = TensorView::contiguous(gate.data(), DType::f32, {d, n_ff, nE, 1});
    const auto uv = TensorView::contiguous(up.data(), DType::f32, {d, n_ff, nE, 1});
    const auto dv = TensorView::contiguous(down.data(), DType::f32, {n_ff, d, nE, 1});
    const auto dtv = TensorView::contiguous(down_t.data(), DType::f32, {d, n_ff, nE, 1});
    const auto x = random_vec(d, 4);
    for (int32_t e = 0; e < nE; ++e) {
      std::vector<double> a(n_ff);
      int64_t want_active = 0;
      for (int64_t j = 0; j < n_ff; ++j) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < d; ++i) {
          g += double(gate[(e * n_ff + j) * d + i]) * x[i];
          u += double(up[(e * n_ff + j) * d + i]) * x[i];
        }
        a[j] = g > 0 ? g * u : 0.0;
        want_active += g > 0;
      }
      std::vector<float> want(d);
      for (int64_t o = 0; o < d; ++o) {
        double s = 0;
        for (int64_t j = 0; j < n_ff; ++j) s += double(down[(e * d + o) * n_ff + j]) * a[j];
        want[o] = static_cast<float>(s);
      }
      std::vector<float> ys(d), yt(d);
      CHECK(expert_reglu(gv, uv, dv, DownLayout::standard, e, x, ys) == want_active);
      CHECK(expert_reglu(gv, uv, dtv, DownLayout::transposed, e, x, yt) == want_active);
      CHECK(test::nmse(ys, want) < 1e-10);
      CHECK(test::nmse(yt, want) < 1e-10);
      CHECK(test::nmse(yt, ys) < 1e-10);
    }
  }
}

TEST_CASE("mul_mat_vec: quantized rows are addressed per matrix and dequantized",
          "[reference][mul_mat]") {
  // 3 matrices of 2 rows x 64; q8_0 and q4_0 copies must give W_dq x for the matching matrix.
  const int64_t k = 64, rows = 2, mats = 3;
  const auto w = random_vec(k * rows * mats, 8);
  const auto x = random_vec(k, 9);
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::q8_0, DType::q4_0}) {
    const size_t row_bytes = dtype_row_size(dt, k);
    std::vector<uint8_t> q(row_bytes * rows * mats);
    for (int64_t r = 0; r < rows * mats; ++r)
      REQUIRE(cpu::quantize_row(dt, &w[r * k], &q[r * row_bytes], k).ok());
    const auto view = TensorView::contiguous(q.data(), dt, {k, rows, mats, 1});
    for (int64_t m = 0; m < mats; ++m) {
      std::vector<float> y(rows);
      mul_mat_vec(view, m, x, y);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> deq(k);
        cpu::dequantize_row(dt, &q[(m * rows + r) * row_bytes], deq.data(), k);
        double want = 0;
        for (int64_t i = 0; i < k; ++i) want += double(deq[i]) * x[i];
        CHECK(y[r] == Approx(want).epsilon(1e-6).margin(1e-6));
        CHECK(mul_mat_row(view, r, m, x) == y[r]);
      }
    }
  }
}
