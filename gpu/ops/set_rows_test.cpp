// Conformance: set_rows (the KV-cache store) into f32 and f16 tables: converted values land in
// the named rows (f16 bit-exact with core/fp16.h, round to nearest even, incl. subnormals,
// overflow and ties), other rows keep their contents, out-of-range indices write nothing.
// Row lengths below / at / above the 256-invocation workgroup. Validation layer on.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "gpu/ops/set_rows.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

TEST_CASE("set_rows stores f32 rows into an f32 or f16 table at device row indices",
          "[gpu][set_rows]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  for (DType t : {DType::f32, DType::f16}) {
    for (int64_t ncols : {2, 128, 256, 258, 1024}) {
      const int64_t nrows = 11;
      const std::vector<int32_t> rows = {3,  0,  10,
                                         -1, 11, 7};  // -1 and 11 are out of range: skipped
      const auto m = static_cast<int64_t>(rows.size());
      auto src = testing::random_f32(static_cast<size_t>(ncols * m), static_cast<uint32_t>(ncols),
                                     -4.f, 4.f);
      // Values that test f16 rounding: ties, subnormals, overflow, NaN, inf, signed zero.
      const float specials[] = {1.0f + 0x1p-11f, 1.0f + 0x3p-11f,
                                0x1p-25f,        0x1.8p-24f,
                                3e-7f,           -6e-8f,
                                65519.f,         65520.f,
                                -1e6f,           std::numeric_limits<float>::infinity(),
                                -0.0f,           std::numeric_limits<float>::quiet_NaN()};
      for (size_t i = 0; i < std::size(specials) && i < src.size(); ++i) src[i] = specials[i];
      const size_t es = t == DType::f16 ? 2 : 4;
      std::vector<uint8_t> table(static_cast<size_t>(ncols * nrows) * es);
      for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<uint8_t>(i * 7 + 1);
      std::vector<uint8_t> expected = table;
      for (int64_t i = 0; i < m; ++i) {
        if (rows[i] < 0 || rows[i] >= nrows) continue;
        for (int64_t c = 0; c < ncols; ++c) {
          uint8_t* d = expected.data() + static_cast<size_t>(rows[i] * ncols + c) * es;
          const float v = src[static_cast<size_t>(i * ncols + c)];
          if (t == DType::f16) {
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(d, &h, 2);
          } else {
            std::memcpy(d, &v, 4);
          }
        }
      }
      Buffer sb = make(fx, src.data(), src.size() * 4, "k_cur");
      Buffer rb = make(fx, rows.data(), rows.size() * 4, "rows");
      Buffer db = make(fx, table.data(), table.size(), "cache_k");
      REQUIRE(fx.rec->begin().ok());
      const Status s =
          ops::set_rows(*fx.rec, sb.slice(), ncols, m, rb.slice(), t, db.slice(), nrows);
      INFO(s.message());
      REQUIRE(s.ok());
      REQUIRE(fx.rec->submit_and_wait().ok());
      std::vector<uint8_t> actual(table.size());
      REQUIRE(db.read(actual.data(), actual.size(), 0).ok());
      INFO(fmt::format("{} ncols={}", dtype_name(t), ncols));
      REQUIRE(actual == expected);
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("set_rows rejects bad shapes and types", "[gpu][set_rows]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  Buffer b = make(fx, nullptr, 4096, "any");
  REQUIRE(fx.rec->begin().ok());
  const BufferSlice s = b.slice();
  CHECK(ops::set_rows(*fx.rec, s, 3, 2, s, DType::f16, s, 4).code() ==
        ErrorCode::invalid_argument);  // odd f16 row
  CHECK(ops::set_rows(*fx.rec, s, 4, 2, s, DType::q8_0, s, 4).code() == ErrorCode::unsupported);
  CHECK(ops::set_rows(*fx.rec, s, 64, 2, s, DType::f32, s, 17).code() ==
        ErrorCode::invalid_argument);  // dst small
  CHECK(ops::set_rows(*fx.rec, s, 4, 2, s, DType::f16, BufferSlice{&b, 2, 64}, 4).code() ==
        ErrorCode::invalid_argument);  // f16 table not word-aligned
  REQUIRE(fx.rec->submit_and_wait().ok());
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
