// Conformance: mul_mat_vec and mul_mat, every dtype and reduction variant, against a plain f64
// reference over shapes below, at and above the workgroup / tile sizes, with odd sizes and
// weights starting at unaligned offsets (as tensors inside a GGUF file do). Run under the
// Khronos validation layer (the ctest entry sets VK_INSTANCE_LAYERS) and require no message.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "gpu/ops/mul_mat.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

using testing::fixture;

// The reference dequantizes the same bits the shader does, so the only difference is f32
// accumulation order versus f64: relative error ~1e-7 per element, NMSE well below 1e-10.
double tolerance(DType t) {
  switch (t) {
    case DType::f32:
    case DType::f16:
    case DType::q8_0:
    case DType::q4_0: return 1e-10;
    default: return 0;
  }
}

constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::q8_0, DType::q4_0};

// Runs one GEMV with the weights placed `w_shift` bytes into their buffer.
std::vector<float> run_gemv(testing::VulkanFixture& fx, DType t, const std::vector<uint8_t>& w, int64_t k,
                            int64_t rows, const std::vector<float>& x, ops::ReductionVariant variant,
                            size_t w_shift = 0) {
  std::vector<uint8_t> padded(w_shift + w.size());
  std::memcpy(padded.data() + w_shift, w.data(), w.size());
  auto wb = testing::host_buffer(*fx.device, padded.data(), padded.size(), "weights");
  auto xb = testing::host_buffer(*fx.device, x.data(), x.size() * 4, "x");
  auto db = testing::host_buffer(*fx.device, nullptr, static_cast<size_t>(rows) * 4, "dst", MemoryIntent::readback);
  REQUIRE(wb.ok());
  REQUIRE(xb.ok());
  REQUIRE(db.ok());
  REQUIRE(fx.rec->begin().ok());
  ops::MulMatVecOptions o;
  o.variant = variant;
  const Status s = ops::mul_mat_vec(*fx.rec, t, wb->slice(w_shift, w.size()), k, rows, xb->slice(), db->slice(), o);
  INFO(s.message());
  REQUIRE(s.ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  return testing::read_f32(*db, static_cast<size_t>(rows));
}

TEST_CASE("mul_mat_vec matches the f64 reference for every dtype and variant", "[gpu][mul_mat]") {
  auto& fx = fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  std::vector<ops::ReductionVariant> variants = {ops::ReductionVariant::portable};
  if (ops::mul_mat_vec_variant(*fx.device, DType::f32, ops::ReductionVariant::subgroup).ok()) {
    variants.push_back(ops::ReductionVariant::subgroup);
  }
  for (DType t : k_dtypes) {
    for (auto variant : variants) {
      for (int64_t rows : {1, 3, 31, 32, 33, 257}) {
        for (int64_t k : {32, 64, 96, 1536 + 32}) {
          const uint32_t seed = static_cast<uint32_t>(rows * 7919 + k * 31 + static_cast<int>(t));
          const auto w = testing::random_weights(t, k, rows, seed);
          const auto x = testing::random_f32(static_cast<size_t>(k), seed + 1);
          const auto expected = testing::ref_mul_mat(t, w.data(), dtype_row_size(t, k), k, rows, x, 1);
          const auto actual = run_gemv(fx, t, w, k, rows, x, variant);
          const double err = test::nmse(actual, expected);
          INFO(fmt::format("{} {} rows={} k={} nmse={:.3g}",
                           *ops::mul_mat_vec_variant(*fx.device, t, variant), dtype_name(t), rows, k, err));
          REQUIRE(err < tolerance(t));
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("mul_mat_vec reads weights at unaligned offsets inside a buffer", "[gpu][mul_mat]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  // GGUF places tensors 32-byte aligned, but expert slices and sub-views land anywhere a row
  // boundary falls: one block (18 / 34 bytes), one f16, one f32.
  for (DType t : k_dtypes) {
    for (size_t shift : {dtype_type_size(t), 2 * dtype_type_size(t) + 64, size_t{4096 + 36}}) {
      if (t == DType::f32 && shift % 4) continue;
      const int64_t k = 96, rows = 33;
      const auto w = testing::random_weights(t, k, rows, 5);
      const auto x = testing::random_f32(k, 6);
      const auto expected = testing::ref_mul_mat(t, w.data(), dtype_row_size(t, k), k, rows, x, 1);
      const auto actual = run_gemv(fx, t, w, k, rows, x, ops::ReductionVariant::automatic, shift);
      INFO(fmt::format("{} shift={}", dtype_name(t), shift));
      REQUIRE(test::nmse(actual, expected) < tolerance(t));
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("mul_mat_vec rejects bad shapes with a Status", "[gpu][mul_mat]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  auto wb = testing::host_buffer(*fx.device, nullptr, 1024, "w");
  auto xb = testing::host_buffer(*fx.device, nullptr, 1024, "x");
  REQUIRE(wb.ok());
  REQUIRE(xb.ok());
  REQUIRE(fx.rec->begin().ok());
  // k not a multiple of the q4_0 block
  Status s = ops::mul_mat_vec(*fx.rec, DType::q4_0, wb->slice(), 48, 1, xb->slice(), xb->slice());
  CHECK(s.code() == ErrorCode::invalid_argument);
  // weights slice too small: 64 rows of 32 q4_0 = 1152 bytes > 1024
  s = ops::mul_mat_vec(*fx.rec, DType::q4_0, wb->slice(), 32, 64, xb->slice(), xb->slice(0, 256));
  CHECK(s.code() == ErrorCode::invalid_argument);
  CHECK(s.message().find("'w'") != std::string::npos);
  // dtype the GPU does not handle
  s = ops::mul_mat_vec(*fx.rec, DType::q4_K, wb->slice(), 256, 1, xb->slice(), xb->slice());
  CHECK(s.code() == ErrorCode::unsupported);
  REQUIRE(fx.rec->submit_and_wait().ok());
  CHECK(fx.rec->dispatch_count() == 0);
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("mul_mat (tiled) matches the f64 reference for every dtype", "[gpu][mul_mat]") {
  auto& fx = fixture();
  REQUIRE(fx.device);
  struct Tile {
    uint32_t m, n, k;
  };
  for (Tile tile : {Tile{16, 16, 32}, Tile{8, 4, 16}}) {
    for (DType t : k_dtypes) {
      for (int64_t M : {1, 15, 16, 17, 33}) {
        for (int64_t N : {1, 4, 16, 17}) {
          for (int64_t K : {32, 96, 1536 + 32}) {
            const uint32_t seed = static_cast<uint32_t>(M * 131 + N * 17 + K + static_cast<int>(t));
            const auto w = testing::random_weights(t, K, M, seed);
            const auto x = testing::random_f32(static_cast<size_t>(K * N), seed + 3);
            const auto expected = testing::ref_mul_mat(t, w.data(), dtype_row_size(t, K), K, M, x, N);
            auto wb = testing::host_buffer(*fx.device, w.data(), w.size(), "weights");
            auto xb = testing::host_buffer(*fx.device, x.data(), x.size() * 4, "src");
            auto db = testing::host_buffer(*fx.device, nullptr, static_cast<size_t>(M * N) * 4, "dst",
                                           MemoryIntent::readback);
            REQUIRE((wb.ok() && xb.ok() && db.ok()));
            REQUIRE(fx.rec->begin().ok());
            ops::MulMatOptions o;
            o.tile_m = tile.m;
            o.tile_n = tile.n;
            o.tile_k = tile.k;
            const Status s = ops::mul_mat(*fx.rec, t, wb->slice(), K, M, xb->slice(), N, db->slice(), o);
            INFO(s.message());
            REQUIRE(s.ok());
            REQUIRE(fx.rec->submit_and_wait().ok());
            const auto actual = testing::read_f32(*db, static_cast<size_t>(M * N));
            const double err = test::nmse(actual, expected);
            INFO(fmt::format("mul_mat_{}_f32 tile {}x{}x{} M={} N={} K={} nmse={:.3g}", dtype_name(t), tile.m,
                             tile.n, tile.k, M, N, K, err));
            REQUIRE(err < tolerance(t));
          }
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
