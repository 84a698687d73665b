// Conformance: mul_mat_vec and mul_mat, every dtype and shader variant the device runs
// (portable, subgroup, intdot for q8_0/q4_0, fp16 for f16; the others WARNed as skipped),
// against a plain f64 reference over shapes below, at and above the workgroup / tile sizes,
// with odd sizes and weights starting at unaligned offsets (as tensors inside a GGUF file do).
// Run under the Khronos validation layer (the ctest entry sets VK_INSTANCE_LAYERS) and require
// no message.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "gpu/ops/mul_mat.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/quantize_q8_1.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/reference_q8.h"
#include "gpu/testing/variants.h"
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
    case DType::q4_0:
      return 1e-10;
    default:
      return 0;
  }
}

constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::q8_0, DType::q4_0};

// Per variant, against the reference of what the variant computes:
//   intdot: against W . q8(x) (reference_q8.h: the CPU's own activation quantization), so only
//   f32 rounding of the per-block scales remains: 1e-10 (measured ~1e-14). Against the exact
//   W . x: intdot_bound_ok.
//   fp16: x, each product and each 8-term partial sum rounded to f16 (unit 2^-11): per row
//   |y - y_exact| <= 2^-8 * sum_k |w_k x_k| (fp16_bound_ok), and NMSE <= 1e-4 (typically 2e-7;
//   a single row whose sum cancels can reach 2e-5).
double tolerance(DType t, ops::ShaderVariant v) {
  return v == ops::ShaderVariant::fp16 ? 1e-4 : tolerance(t);
}

// The fp16 variant's per-row error bound above; w is f16, sign bits cleared for sum |w x|.
bool fp16_bound_ok(const std::vector<uint8_t>& w, int64_t k, int64_t rows,
                   const std::vector<float>& x, const std::vector<float>& actual,
                   const std::vector<float>& exact) {
  std::vector<uint8_t> w_abs = w;
  for (size_t i = 1; i < w_abs.size(); i += 2) w_abs[i] &= 0x7F;
  std::vector<float> x_abs(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_abs[i] = std::fabs(x[i]);
  const auto mag = testing::ref_mul_mat(DType::f16, w_abs.data(), dtype_row_size(DType::f16, k), k,
                                        rows, x_abs, 1);
  for (size_t i = 0; i < mag.size(); ++i) {
    if (!(std::fabs(actual[i] - exact[i]) <= std::ldexp(mag[i], -8))) return false;
  }
  return true;
}
// intdot against the exact W . x: each activation moves by at most half a quantization step,
// amax_block / 254, so per row |y - y_exact| <= sum_blocks amax_b / 254 * sum_{k in b} |w_k|.
bool intdot_bound_ok(DType t, const std::vector<uint8_t>& w, int64_t k, int64_t rows,
                     const std::vector<float>& x, const std::vector<float>& actual,
                     const std::vector<float>& exact) {
  const size_t row_size = dtype_row_size(t, k);
  for (int64_t i = 0; i < rows; ++i) {
    double bound = 0;
    for (int64_t b = 0; b < k / 32; ++b) {
      double amax = 0, wsum = 0;
      for (int64_t j = 32 * b; j < 32 * b + 32; ++j) {
        amax = std::max(amax, std::fabs(static_cast<double>(x[j])));
        wsum += std::fabs(testing::dequant(t, w.data() + row_size * static_cast<size_t>(i), j));
      }
      bound += amax / 254 * wsum;
    }
    if (!(std::fabs(actual[i] - exact[i]) <= bound * 1.001 + 1e-6)) return false;
  }
  return true;
}

// Runs one GEMV with the weights placed `w_shift` bytes into their buffer.
std::vector<float> run_gemv(testing::VulkanFixture& fx, DType t, const std::vector<uint8_t>& w,
                            int64_t k, int64_t rows, const std::vector<float>& x,
                            ops::ReductionVariant variant, size_t w_shift = 0) {
  // A q8_1 slice at a 4-byte but not 16-byte offset, for the intdot variants (automatic picks
  // intdot only when one is given).
  const uint64_t q_bytes = ops::q8_1_bytes(k, 1);
  auto qb = testing::host_buffer(*fx.device, nullptr, q_bytes + 4, "q8_1");
  REQUIRE(qb.ok());
  std::vector<uint8_t> padded(w_shift + w.size());
  std::memcpy(padded.data() + w_shift, w.data(), w.size());
  auto wb = testing::host_buffer(*fx.device, padded.data(), padded.size(), "weights");
  auto xb = testing::host_buffer(*fx.device, x.data(), x.size() * 4, "x");
  auto db = testing::host_buffer(*fx.device, nullptr, static_cast<size_t>(rows) * 4, "dst",
                                 MemoryIntent::readback);
  REQUIRE(wb.ok());
  REQUIRE(xb.ok());
  REQUIRE(db.ok());
  REQUIRE(fx.rec->begin().ok());
  ops::MulMatVecOptions o;
  o.variant = variant;
  if (q_bytes != 0) o.q8_1 = qb->slice(4, q_bytes);
  const Status s = ops::mul_mat_vec(*fx.rec, t, wb->slice(w_shift, w.size()), k, rows, xb->slice(),
                                    db->slice(), o);
  INFO(s.message());
  REQUIRE(s.ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  return testing::read_f32(*db, static_cast<size_t>(rows));
}

TEST_CASE("mul_mat_vec matches the f64 reference for every dtype and variant", "[gpu][mul_mat]") {
  auto& fx = fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  using ops::ShaderVariant;
  for (DType t : k_dtypes) {
    const std::string base = fmt::format("mul_mat_vec_{}_f32", dtype_name(t));
    const auto variants = testing::variants_or_warn(
        fx.device->caps(), ops::mul_mat_vec_variants(*fx.device, t),
        t == DType::f16
            ? std::initializer_list<ShaderVariant>{ShaderVariant::subgroup, ShaderVariant::fp16}
        : t == DType::f32
            ? std::initializer_list<ShaderVariant>{ShaderVariant::subgroup}
            : std::initializer_list<ShaderVariant>{ShaderVariant::subgroup, ShaderVariant::intdot},
        base);
    for (auto variant : variants) {
      for (int64_t rows : {1, 3, 31, 32, 33, 257}) {
        // f16 rows also of odd and non-multiple-of-8 lengths (the fp16 variant's 8-wide steps).
        for (int64_t k : {32, 64, 96, 1536 + 32, 7, 1536 + 13}) {
          if (k % dtype_block_size(t) != 0) continue;
          const uint32_t seed = static_cast<uint32_t>(rows * 7919 + k * 31 + static_cast<int>(t));
          const auto w = testing::random_weights(t, k, rows, seed);
          const auto x = testing::random_f32(static_cast<size_t>(k), seed + 1);
          const auto exact = testing::ref_mul_mat(t, w.data(), dtype_row_size(t, k), k, rows, x, 1);
          const bool intdot = variant == ShaderVariant::intdot;
          const auto expected = intdot ? testing::ref_mul_mat(t, w.data(), dtype_row_size(t, k), k,
                                                              rows, testing::q8_values(x), 1)
                                       : exact;
          const auto actual = run_gemv(fx, t, w, k, rows, x, variant);
          const double err = test::nmse(actual, expected);
          INFO(fmt::format("{} {} rows={} k={} nmse={:.3g} (vs exact {:.3g})",
                           *ops::mul_mat_vec_variant(*fx.device, t, variant), dtype_name(t), rows,
                           k, err, test::nmse(actual, exact)));
          REQUIRE(err < tolerance(t, variant));
          if (intdot) REQUIRE(intdot_bound_ok(t, w, k, rows, x, actual, exact));
          if (variant == ShaderVariant::fp16) REQUIRE(fp16_bound_ok(w, k, rows, x, actual, exact));
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
  // Every variant: the intdot and fp16 ones read 4 bytes at 2-byte-aligned offsets.
  for (DType t : k_dtypes) {
    for (ops::ShaderVariant variant : ops::mul_mat_vec_variants(*fx.device, t)) {
      for (size_t shift : {dtype_type_size(t), 2 * dtype_type_size(t) + 64, size_t{4096 + 36}}) {
        if (t == DType::f32 && shift % 4) continue;
        const int64_t k = 96, rows = 33;
        const auto w = testing::random_weights(t, k, rows, 5);
        const auto x = testing::random_f32(k, 6);
        const bool intdot = variant == ops::ShaderVariant::intdot;
        const auto expected = testing::ref_mul_mat(t, w.data(), dtype_row_size(t, k), k, rows,
                                                   intdot ? testing::q8_values(x) : x, 1);
        const auto actual = run_gemv(fx, t, w, k, rows, x, variant, shift);
        INFO(
            fmt::format("{} {} shift={}", dtype_name(t), ops::shader_variant_name(variant), shift));
        REQUIRE(test::nmse(actual, expected) < tolerance(t, variant));
      }
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
            const auto expected =
                testing::ref_mul_mat(t, w.data(), dtype_row_size(t, K), K, M, x, N);
            auto wb = testing::host_buffer(*fx.device, w.data(), w.size(), "weights");
            auto xb = testing::host_buffer(*fx.device, x.data(), x.size() * 4, "src");
            auto db = testing::host_buffer(*fx.device, nullptr, static_cast<size_t>(M * N) * 4,
                                           "dst", MemoryIntent::readback);
            REQUIRE((wb.ok() && xb.ok() && db.ok()));
            REQUIRE(fx.rec->begin().ok());
            ops::MulMatOptions o;
            o.tile_m = tile.m;
            o.tile_n = tile.n;
            o.tile_k = tile.k;
            const Status s =
                ops::mul_mat(*fx.rec, t, wb->slice(), K, M, xb->slice(), N, db->slice(), o);
            INFO(s.message());
            REQUIRE(s.ok());
            REQUIRE(fx.rec->submit_and_wait().ok());
            const auto actual = testing::read_f32(*db, static_cast<size_t>(M * N));
            const double err = test::nmse(actual, expected);
            INFO(fmt::format("mul_mat_{}_f32 tile {}x{}x{} M={} N={} K={} nmse={:.3g}",
                             dtype_name(t), tile.m, tile.n, tile.k, M, N, K, err));
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
