// Conformance: rms_norm, rope (neox), soft_max and add against plain f64 references written
// here from ggml's definitions, over row lengths below, at and above the workgroup sizes
// (64 / 128 / 256) and odd sizes. Runs under the validation layer; requires no message.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "gpu/ops/add.h"
#include "gpu/ops/rms_norm.h"
#include "gpu/ops/rope.h"
#include "gpu/ops/soft_max.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

using testing::fixture;

// f32 kernels against f64 references. rms_norm/add/soft_max: a few ulps per element.
// rope: theta = pos * base^(-2i/n) in f32 (pow + product) loses ~pos * 2^-24 rad.
constexpr double k_tol_elementwise = 1e-10;
constexpr double k_tol_rope = 1e-8;

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

TEST_CASE("rms_norm matches ggml_rms_norm (with and without the weight)", "[gpu][norm]") {
  auto& fx = fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const float eps = 1e-6f;
  for (int64_t ncols : {1, 3, 127, 128, 129, 1536}) {
    for (int64_t nrows : {1, 5}) {
      for (bool with_weight : {false, true}) {
        const auto x = testing::random_f32(static_cast<size_t>(ncols * nrows), static_cast<uint32_t>(ncols + nrows));
        const auto w = testing::random_f32(static_cast<size_t>(ncols), 77, 0.5f, 1.5f);
        std::vector<float> expected(x.size());
        for (int64_t r = 0; r < nrows; ++r) {
          double ss = 0;
          for (int64_t c = 0; c < ncols; ++c) ss += static_cast<double>(x[r * ncols + c]) * x[r * ncols + c];
          const double scale = 1.0 / std::sqrt(ss / static_cast<double>(ncols) + eps);
          for (int64_t c = 0; c < ncols; ++c) {
            expected[r * ncols + c] = static_cast<float>(x[r * ncols + c] * scale * (with_weight ? w[c] : 1.0));
          }
        }
        Buffer xb = make(fx, x.data(), x.size() * 4, "x");
        Buffer wb = make(fx, w.data(), w.size() * 4, "weight");
        Buffer db = make(fx, nullptr, x.size() * 4, "dst");
        REQUIRE(fx.rec->begin().ok());
        const Status s = ops::rms_norm(*fx.rec, xb.slice(), ncols, nrows, eps,
                                       with_weight ? std::optional(wb.slice()) : std::nullopt, db.slice());
        INFO(s.message());
        REQUIRE(s.ok());
        REQUIRE(fx.rec->submit_and_wait().ok());
        const double err = test::nmse(testing::read_f32(db, x.size()), expected);
        INFO(fmt::format("ncols={} nrows={} weight={} nmse={:.3g}", ncols, nrows, with_weight, err));
        REQUIRE(err < k_tol_elementwise);
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("rope_neox matches ggml's NEOX rotation", "[gpu][rope]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  struct Shape {
    int64_t ne0, ne1, ne2, n_rot;
  };
  for (Shape sh : {Shape{128, 12, 3, 128}, Shape{128, 2, 1, 128}, Shape{64, 3, 5, 32}, Shape{6, 1, 2, 4},
                   Shape{256, 1, 1, 256}}) {
    const float base = 1.5e6f;
    const size_t n = static_cast<size_t>(sh.ne0 * sh.ne1 * sh.ne2);
    const auto x = testing::random_f32(n, static_cast<uint32_t>(sh.ne0 + sh.ne2));
    std::vector<int32_t> pos(static_cast<size_t>(sh.ne2));
    for (int64_t t = 0; t < sh.ne2; ++t) pos[t] = static_cast<int32_t>(t * 97 + 3);
    std::vector<float> expected(n);
    for (int64_t t = 0; t < sh.ne2; ++t) {
      for (int64_t h = 0; h < sh.ne1; ++h) {
        const size_t b = static_cast<size_t>((t * sh.ne1 + h) * sh.ne0);
        for (int64_t i = 0; i < sh.n_rot / 2; ++i) {
          const double theta = pos[t] * std::pow(static_cast<double>(base), -2.0 * i / sh.n_rot);
          const double x0 = x[b + i], x1 = x[b + i + sh.n_rot / 2];
          expected[b + i] = static_cast<float>(x0 * std::cos(theta) - x1 * std::sin(theta));
          expected[b + i + sh.n_rot / 2] = static_cast<float>(x0 * std::sin(theta) + x1 * std::cos(theta));
        }
        for (int64_t i = sh.n_rot; i < sh.ne0; ++i) expected[b + i] = x[b + i];
      }
    }
    Buffer xb = make(fx, x.data(), n * 4, "x");
    Buffer pb = make(fx, pos.data(), pos.size() * 4, "pos");
    Buffer db = make(fx, nullptr, n * 4, "dst");
    REQUIRE(fx.rec->begin().ok());
    const Status s = ops::rope_neox(*fx.rec, xb.slice(), pb.slice(), sh.ne0, sh.ne1, sh.ne2, sh.n_rot, base, db.slice());
    INFO(s.message());
    REQUIRE(s.ok());
    REQUIRE(fx.rec->submit_and_wait().ok());
    const double err = test::nmse(testing::read_f32(db, n), expected);
    INFO(fmt::format("ne=[{}, {}, {}] n_rot={} nmse={:.3g}", sh.ne0, sh.ne1, sh.ne2, sh.n_rot, err));
    REQUIRE(err < k_tol_rope);
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("soft_max matches ggml_soft_max_ext (scale, broadcast mask)", "[gpu][soft_max]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t ncols : {1, 7, 128, 129, 1000}) {
    for (int64_t nrows : {1, 6}) {
      for (bool with_mask : {false, true}) {
        const int64_t mask_rows = 3;
        const float scale = 0.125f;
        const auto x = testing::random_f32(static_cast<size_t>(ncols * nrows), static_cast<uint32_t>(ncols * 3 + nrows),
                                           -8.f, 8.f);
        std::vector<float> mask(static_cast<size_t>(ncols * mask_rows));
        // causal-style: row m masks columns beyond m + ncols/2 (column 0 always kept)
        for (int64_t m = 0; m < mask_rows; ++m) {
          for (int64_t c = 0; c < ncols; ++c) mask[m * ncols + c] = c > m + ncols / 2 ? ninf : 0.25f * m;
        }
        std::vector<float> expected(x.size());
        for (int64_t r = 0; r < nrows; ++r) {
          std::vector<double> v(static_cast<size_t>(ncols));
          double mx = -INFINITY, sum = 0;
          for (int64_t c = 0; c < ncols; ++c) {
            v[c] = static_cast<double>(x[r * ncols + c]) * scale + (with_mask ? mask[(r % mask_rows) * ncols + c] : 0.0);
            mx = std::max(mx, v[c]);
          }
          for (int64_t c = 0; c < ncols; ++c) sum += std::exp(v[c] - mx);
          for (int64_t c = 0; c < ncols; ++c) expected[r * ncols + c] = static_cast<float>(std::exp(v[c] - mx) / sum);
        }
        Buffer xb = make(fx, x.data(), x.size() * 4, "x");
        Buffer mb = make(fx, mask.data(), mask.size() * 4, "mask");
        Buffer db = make(fx, nullptr, x.size() * 4, "dst");
        REQUIRE(fx.rec->begin().ok());
        std::optional<ops::SoftMaxMask> m;
        if (with_mask) m = ops::SoftMaxMask{mb.slice(), mask_rows};
        const Status s = ops::soft_max(*fx.rec, xb.slice(), ncols, nrows, scale, m, db.slice());
        INFO(s.message());
        REQUIRE(s.ok());
        REQUIRE(fx.rec->submit_and_wait().ok());
        const double err = test::nmse(testing::read_f32(db, x.size()), expected);
        INFO(fmt::format("ncols={} nrows={} mask={} nmse={:.3g}", ncols, nrows, with_mask, err));
        REQUIRE(err < k_tol_elementwise);
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("add broadcasts b over rows and works in place", "[gpu][add]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  for (int64_t ncols : {1, 255, 256, 257, 1536}) {
    for (int64_t b_rows : {1, 2}) {
      const int64_t nrows = 4;
      const auto a = testing::random_f32(static_cast<size_t>(ncols * nrows), static_cast<uint32_t>(ncols));
      const auto b = testing::random_f32(static_cast<size_t>(ncols * b_rows), static_cast<uint32_t>(ncols + 1));
      std::vector<float> expected(a.size());
      for (int64_t r = 0; r < nrows; ++r) {
        for (int64_t c = 0; c < ncols; ++c) expected[r * ncols + c] = a[r * ncols + c] + b[(r % b_rows) * ncols + c];
      }
      Buffer ab = make(fx, a.data(), a.size() * 4, "a");
      Buffer bb = make(fx, b.data(), b.size() * 4, "b");
      REQUIRE(fx.rec->begin().ok());
      REQUIRE(ops::add(*fx.rec, ab.slice(), bb.slice(), ncols, nrows, b_rows, ab.slice()).ok());  // in place
      REQUIRE(fx.rec->submit_and_wait().ok());
      INFO(fmt::format("ncols={} b_rows={}", ncols, b_rows));
      REQUIRE(test::max_abs_diff(testing::read_f32(ab, a.size()), expected) == 0.0);  // one f32 add: exact
    }
  }
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
