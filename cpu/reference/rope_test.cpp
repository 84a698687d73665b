#include <catch2/catch.hpp>

#include <cmath>
#include <complex>
#include <random>
#include <vector>

#include "cpu/reference/ops.h"

using namespace tandem::cpu::reference;

namespace {
double norm2(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return s;
}
}  // namespace

TEST_CASE("rope_neox: hand-computed n_rot = 4", "[reference][rope]") {
  // theta_0 = 1 * 10000^0 = 1 rad on pair (0, 2); theta_1 = 10000^(-1/2) = 0.01 rad on (1, 3).
  // Elements 4, 5 lie beyond n_rot and stay.
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  rope_neox(x, 1, 4, 10000.0f);
  CHECK(x[0] == Approx(-1.9841106485555495));  // 1 cos1 - 3 sin1
  CHECK(x[2] == Approx(2.4623779024123156));   // 1 sin1 + 3 cos1
  CHECK(x[1] == Approx(1.959900667496664));    // 2 cos.01 - 4 sin.01
  CHECK(x[3] == Approx(4.019799668334994));    // 2 sin.01 + 4 cos.01
  CHECK(x[4] == 5.0f);
  CHECK(x[5] == 6.0f);
}

TEST_CASE("rope_neox: pos 0 is identity, norm preserved, equals complex multiplication",
          "[reference][rope]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int n_rot : {2, 8, 64, 128}) {
    std::vector<float> x(static_cast<size_t>(n_rot));
    for (auto& v : x) v = nd(rng);

    std::vector<float> id = x;
    rope_neox(id, 0, n_rot, 1.5e6f);
    CHECK(id == x);

    for (int64_t pos : {1, 17, 4095, 30000}) {
      std::vector<float> r = x;
      rope_neox(r, pos, n_rot, 1.5e6f);
      CHECK(norm2(r) == Approx(norm2(x)).epsilon(1e-5));
      // Complex form: z_i = x_i + i x_{i+n/2}, z_i' = z_i * exp(i pos base^(-2i/n)).
      const int half = n_rot / 2;
      for (int i = 0; i < half; ++i) {
        const double theta = double(pos) * std::pow(1.5e6, -2.0 * i / n_rot);
        const std::complex<double> z =
            std::complex<double>(x[i], x[i + half]) * std::polar(1.0, theta);
        CHECK(r[i] == Approx(z.real()).margin(1e-5));
        CHECK(r[i + half] == Approx(z.imag()).margin(1e-5));
      }
    }
  }
}
