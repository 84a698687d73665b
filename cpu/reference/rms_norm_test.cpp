#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/reference/ops.h"

using namespace tandem::cpu::reference;

TEST_CASE("rms_norm: closed forms", "[reference][rms_norm]") {
  // mean([3,4]^2) = 12.5 -> y = x / sqrt(12.5) * w
  std::vector<float> y(2);
  rms_norm(std::vector<float>{3.0f, 4.0f}, std::vector<float>{1.0f, 2.0f}, 0.0f, y);
  CHECK(y[0] == Approx(3.0 / std::sqrt(12.5)));
  CHECK(y[1] == Approx(2.0 * 4.0 / std::sqrt(12.5)));
  // A constant vector c normalises to sign(c) * w (eps = 0).
  std::vector<float> c(5, -7.0f), w = {1, 2, 3, 4, 5}, yc(5);
  rms_norm(c, w, 0.0f, yc);
  for (int i = 0; i < 5; ++i) CHECK(yc[i] == Approx(-w[i]));
  // eps enters under the root: [1] with eps 3 -> 1/sqrt(1 + 3) = 0.5.
  std::vector<float> one = {1.0f}, y1(1);
  rms_norm(one, std::vector<float>{1.0f}, 3.0f, y1);
  CHECK(y1[0] == Approx(0.5));
}

TEST_CASE("rms_norm: random rows against the formula, odd sizes, in place",
          "[reference][rms_norm]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int n : {1, 7, 32, 33, 1536}) {
    std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
    std::vector<float> y = x;
    rms_norm(y, w, 1e-6f, y);  // aliasing allowed
    for (int i = 0; i < n; ++i)
      CHECK(y[i] == Approx(x[i] * inv * w[i]).epsilon(1e-6).margin(1e-30));
  }
}
