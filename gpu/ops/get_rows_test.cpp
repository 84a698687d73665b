// Conformance: get_rows (token embedding lookup) for f32, f16, q8_0 and q4_0 rows against ggml
// dequantization, rows shorter than / at / above the 64-invocation workgroup, repeated ids and
// an out-of-range id (NaN row); tables bound in parts (as above maxStorageBufferRange).
// Validation layer on; zero messages required.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "gpu/ops/get_rows.h"
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

// What get_rows keeps free in each part's binding for the offset alignment.
uint64_t reserve(const testing::VulkanFixture& fx) {
  return std::max<uint64_t>(fx.device->caps().min_storage_buffer_offset_alignment, 4);
}

TEST_CASE("get_rows dequantizes the rows named by ids", "[gpu][get_rows]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  for (DType t : {DType::f32, DType::f16, DType::q8_0, DType::q4_0}) {
    for (auto [ncols, parted] : {std::pair<int64_t, bool>{32, false},
                                 {64, false},
                                 {96, true},
                                 {1536, false},
                                 {1536, true}}) {
      const int64_t nrows = 37;
      const std::vector<int32_t> ids = {5, 0, 36, 5, 17, 1, 36, 8};
      const auto w = testing::random_weights(t, ncols, nrows,
                                             static_cast<uint32_t>(ncols + static_cast<int>(t)));
      const size_t row = dtype_row_size(t, ncols);
      std::vector<float> expected;
      for (int32_t id : ids) {
        for (int64_t c = 0; c < ncols; ++c) {
          expected.push_back(
              static_cast<float>(testing::dequant(t, w.data() + row * static_cast<size_t>(id), c)));
        }
      }
      Buffer wb = make(fx, w.data(), w.size(), "token_embd.weight");
      Buffer ib = make(fx, ids.data(), ids.size() * 4, "ids");
      Buffer db = make(fx, nullptr, expected.size() * 4, "dst");
      REQUIRE(fx.rec->begin().ok());
      const Status s = ops::get_rows(*fx.rec, t, wb.slice(), ncols, nrows, ib.slice(),
                                     static_cast<int64_t>(ids.size()), db.slice(),
                                     parted ? reserve(fx) + 4 * row : 0);  // 4 rows a part
      INFO(s.message());
      REQUIRE(s.ok());
      REQUIRE(fx.rec->submit_and_wait().ok());
      const auto actual = testing::read_f32(db, expected.size());
      INFO(fmt::format("{} ncols={} parted={}", dtype_name(t), ncols, parted));
      // Both sides decode the same bits with one f16 -> f32 conversion and one product: exact.
      REQUIRE(test::max_abs_diff(actual, expected) == 0.0);
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("get_rows: an id outside the table gives a NaN row; bad shapes are rejected",
          "[gpu][get_rows]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const auto w = testing::random_weights(DType::q8_0, 64, 4, 3);
  const std::vector<int32_t> ids = {2, -1, 4, 3};
  Buffer wb = make(fx, w.data(), w.size(), "token_embd.weight");
  Buffer ib = make(fx, ids.data(), ids.size() * 4, "ids");
  Buffer db = make(fx, nullptr, 64 * 4 * 4, "dst");
  REQUIRE(fx.rec->begin().ok());
  // In parts of one row: the NaN rows are written once, by the first part.
  REQUIRE(ops::get_rows(*fx.rec, DType::q8_0, wb.slice(), 64, 4, ib.slice(), 4, db.slice(),
                        reserve(fx) + 68)
              .ok());
  REQUIRE(fx.rec->dispatch_count() == 4);
  CHECK(ops::get_rows(*fx.rec, DType::q8_0, wb.slice(), 48, 4, ib.slice(), 4, db.slice()).code() ==
        ErrorCode::invalid_argument);  // not a whole number of blocks
  CHECK(ops::get_rows(*fx.rec, DType::q8_0, wb.slice(), 64, 5, ib.slice(), 4, db.slice()).code() ==
        ErrorCode::invalid_argument);  // src holds 4 rows
  CHECK(ops::get_rows(*fx.rec, DType::bf16, wb.slice(), 64, 4, ib.slice(), 4, db.slice()).code() ==
        ErrorCode::unsupported);
  REQUIRE(fx.rec->submit_and_wait().ok());
  const auto out = testing::read_f32(db, 64 * 4);
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 64; ++c)
      REQUIRE(std::isnan(out[static_cast<size_t>(r * 64 + c)]) == (r == 1 || r == 2));
  }
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
