#include "cpu/top_k.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernel_table_check.h"
#include "cpu/reference/ops.h"

using namespace tandem::cpu;

// top_k has no per-ISA variants (n <= 256 is latency, not bandwidth): one plain version.
TEST_CASE("top_k equals the reference's stable top_k, ties and NaN included", "[cpu][top_k]") {
  check::Rng rng(7);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int64_t n_checked = 0;
  for (int64_t n : {1, 2, 3, 7, 8, 31, 32, 33, 64, 65, 100, 256}) {
    for (int64_t k : {0, 1, 2, 4, 6, 8, 63, 64, 65, 200}) {
      for (int variant = 0; variant < 4; ++variant) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) {
          // variant 0: distinct-ish values; 1: few values (many ties); 2: specials mixed in;
          // 3: all equal.
          switch (variant) {
            case 0: v = rng.uniform(-4.0f, 4.0f); break;
            case 1: v = static_cast<float>(rng.next() % 3); break;
            case 2: {
              const uint64_t r = rng.next() % 6;
              v = r == 0 ? nan : r == 1 ? -inf : r == 2 ? inf : static_cast<float>(rng.next() % 2);
              break;
            }
            default: v = 0.5f; break;
          }
        }
        const auto want = reference::top_k(x, k);
        std::vector<int32_t> got(want.size() + 1, -7);
        top_k(x.data(), n, k, got.data());
        INFO("n " << n << " k " << k << " variant " << variant);
        REQUIRE(std::vector<int32_t>(got.begin(), got.end() - 1) == want);
        CHECK(got.back() == -7);  // nothing written past the clamped k
        ++n_checked;
      }
    }
  }
  CHECK(n_checked == 12 * 10 * 4);
}

TEST_CASE("top_k_rows selects per row with a row stride", "[cpu][top_k]") {
  check::Rng rng(11);
  const int64_t n_rows = 5, n = 32, stride = 37, k = 4;
  std::vector<float> x(static_cast<size_t>(n_rows * stride), 1e9f);  // padding must never be picked
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t j = 0; j < n; ++j) x[static_cast<size_t>(r * stride + j)] = rng.uniform(0.0f, 1.0f);
  std::vector<int32_t> idx(static_cast<size_t>(n_rows * k));
  top_k_rows(x.data(), n_rows, stride, n, k, idx.data());
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto want = reference::top_k(std::span<const float>(x.data() + r * stride, static_cast<size_t>(n)), k);
    CHECK(std::vector<int32_t>(idx.begin() + r * k, idx.begin() + (r + 1) * k) == want);
  }
}
