#include "cpu/kernel_table.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "cpu/kernel_table_check.h"
#include "cpu/quants.h"

namespace tandem::cpu {
namespace {

TEST_CASE("kernel table of every host ISA matches the scalar reference", "[cpu][kernels]") {
  const KernelTable* ref = kernels_for(Isa::scalar);
  REQUIRE(ref != nullptr);
  for (Isa isa : k_all_isas) {
    const KernelTable* t = kernels_for(isa);
    if (t == nullptr) {
      WARN("skipping ISA " << isa_name(isa) << ": host cannot run it");
      continue;
    }
    CHECK(t->isa == isa);
    const check::Report rep = check::check_table(*t, *ref, 7);
    INFO("ISA " << isa_name(isa) << ", " << rep.checks << " checks");
    for (const auto& f : rep.failures) UNSCOPED_INFO(f);
    CHECK(rep.failures.empty());
    CHECK(rep.checks > 10000);
  }
}

TEST_CASE("kernels() is the table of best_isa()", "[cpu][kernels]") {
  CHECK(kernels().isa == best_isa());
  CHECK(kernels_for(best_isa()) == &kernels());
}

TEST_CASE("scalar quantize_row_q8_0 is bit-exact with cpu/quants.h", "[cpu][kernels]") {
  const KernelTable& s = *kernels_for(Isa::scalar);
  check::Rng rng(3);
  for (int64_t k : check::k_ks) {
    std::vector<float> x(static_cast<size_t>(k));
    for (auto& v : x) v = rng.uniform(-10.0f, 10.0f);
    for (int j = 0; j < 32; ++j) x[j] = j == 0 ? -127.0f : static_cast<float>(j % 7) - 3.5f;  // ties
    std::vector<uint8_t> a(dtype_row_size(DType::q8_0, k)), b(a.size());
    s.quantize_row_q8_0(x.data(), a.data(), k);
    quantize_row_q8_0(x.data(), b.data(), k);
    CHECK(a == b);
  }
}

// The scalar dots against dequantise-then-multiply in double (cpu/quants.h): the scalar
// table is the reference for the SIMD ones, so it is checked against the format itself.
TEST_CASE("scalar dots equal dequantised dot products", "[cpu][kernels]") {
  const KernelTable& s = *kernels_for(Isa::scalar);
  check::Rng rng(11);
  for (DType d : check::k_weight_dtypes) {
    for (int64_t k : check::k_ks) {
      std::vector<uint8_t> w(dtype_row_size(d, k));
      check::fill_row(d, k, w.data(), rng);
      std::vector<float> xf(static_cast<size_t>(k)), wf(xf.size()), xd(xf.size());
      for (auto& v : xf) v = rng.uniform(-1.0f, 1.0f);
      std::vector<uint8_t> xq(dtype_row_size(DType::q8_0, k));
      const bool q = d == DType::q4_0 || d == DType::q8_0;
      if (q) {
        s.quantize_row_q8_0(xf.data(), xq.data(), k);
        dequantize_row(DType::q8_0, xq.data(), xd.data(), k);
      } else {
        xd = xf;
      }
      dequantize_row(d, w.data(), wf.data(), k);
      double want = 0.0;
      for (int64_t i = 0; i < k; ++i) want += static_cast<double>(wf[i]) * xd[i];
      const float got = check::dot_of(s, d, k, w.data(), q ? static_cast<const void*>(xq.data()) : xf.data());
      const double terms = check::abs_terms(d, k, w.data(), q ? xq.data() : reinterpret_cast<const uint8_t*>(xf.data()));
      INFO(dtype_name(d) << " k=" << k);
      CHECK(std::fabs(got - want) <= (static_cast<double>(k) + 4) * check::k_u * terms + 1e-30);
    }
  }
}

TEST_CASE("scalar axpy_q4_0_f32 adds a times the dequantised row", "[cpu][kernels]") {
  const KernelTable& s = *kernels_for(Isa::scalar);
  check::Rng rng(5);
  const int64_t k = 96;
  std::vector<uint8_t> w(dtype_row_size(DType::q4_0, k));
  check::fill_row(DType::q4_0, k, w.data(), rng);
  std::vector<float> wf(static_cast<size_t>(k));
  dequantize_row(DType::q4_0, w.data(), wf.data(), k);
  const float a[2] = {0.5f, -3.0f};
  std::vector<float> y(static_cast<size_t>(2 * k), 1.0f);
  s.axpy_q4_0_f32(k, 2, a, w.data(), y.data(), k);
  for (int t = 0; t < 2; ++t) {
    for (int64_t i = 0; i < k; ++i) CHECK(y[t * k + i] == Approx(1.0 + a[t] * wf[i]).epsilon(1e-6));
  }
}

TEST_CASE("scalar rms_norm, soft_max and rope_neox follow their formulas", "[cpu][kernels]") {
  const KernelTable& s = *kernels_for(Isa::scalar);
  const float x[4] = {1.0f, -2.0f, 3.0f, -4.0f};
  float y[4];
  s.rms_norm(4, x, nullptr, 0.0f, y);
  CHECK(y[1] == Approx(-2.0 / std::sqrt(7.5)));
  const float mask[4] = {0.0f, -INFINITY, 0.0f, 0.0f};
  s.soft_max(4, x, mask, 0.5f, y);
  const double z = std::exp(0.5) + std::exp(1.5) + std::exp(-2.0);
  CHECK(y[1] == 0.0f);
  CHECK(y[2] == Approx(std::exp(1.5) / z));
  // One head of 4 dims, n_rot 4, pos 3: pair (0,2) rotates by 3 rad, pair (1,3) by 3 / base^(1/2).
  float h[4] = {1.0f, 2.0f, 0.0f, 0.0f};
  s.rope_neox(h, 1, 4, 4, 3, 100.0f);
  CHECK(h[0] == Approx(std::cos(3.0)));
  CHECK(h[2] == Approx(std::sin(3.0)));
  CHECK(h[1] == Approx(2.0 * std::cos(0.3)));
  CHECK(h[3] == Approx(2.0 * std::sin(0.3)));
}

}  // namespace
}  // namespace tandem::cpu
