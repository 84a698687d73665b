// Quantization helpers against hand-computed blocks (ggml's reference formulas, spec §3.6),
// round-trip error bounds on random data, and f16/bf16 conversion edge values.
#include "cpu/quants.h"

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"

using namespace tandem;

namespace {

std::array<float, 32> block_of(std::initializer_list<float> head) {
  std::array<float, 32> x{};
  size_t i = 0;
  for (float v : head) x[i++] = v;
  return x;
}

block_q8_0 q8(const std::array<float, 32>& x) {
  block_q8_0 b{};
  cpu::quantize_row_q8_0(x.data(), &b, 32);
  return b;
}

block_q4_0 q4(const std::array<float, 32>& x) {
  block_q4_0 b{};
  cpu::quantize_row_q4_0(x.data(), &b, 32);
  return b;
}

}  // namespace

TEST_CASE("q8_0 quantize: d = 1 block rounds halfway values away from zero", "[quants]") {
  // amax = 127 -> d = 1 exactly (f16 0x3c00), id = 1; roundf(2.5) = 3, roundf(-2.5) = -3.
  const auto x = block_of({127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f, -127.0f, 0.49f, -0.49f});
  const auto b = q8(x);
  CHECK(b.d == 0x3c00);
  const std::array<int8_t, 11> head = {127, 3, -3, 1, -1, 2, -2, 127, -127, 0, 0};
  for (size_t j = 0; j < head.size(); ++j) CHECK(b.qs[j] == head[j]);
  for (size_t j = head.size(); j < 32; ++j) CHECK(b.qs[j] == 0);
}

TEST_CASE("q8_0 quantize: all-zero block has d = 0 and zero quants", "[quants]") {
  const auto b = q8(block_of({}));
  CHECK(b.d == 0x0000);
  for (int j = 0; j < 32; ++j) CHECK(b.qs[j] == 0);
}

TEST_CASE("q8_0 quantize: non-representable d and +-63.5 ties", "[quants]") {
  // x_j = (j - 16) / 4: amax 4, d = 4/127 = 0.0314960629 -> f16 0x2808, id = 31.75,
  // q_j = roundf((j - 16) * 7.9375); j = 8 and 24 give -63.5 / 63.5 -> -64 / 64.
  std::array<float, 32> x{};
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) / 4.0f;
  const auto b = q8(x);
  CHECK(b.d == 0x2808);
  const std::array<int8_t, 32> want = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48,
                                       -40,  -32,  -24,  -16,  -8,  0,   8,   16,  24,  32,  40,
                                       48,   56,   64,   71,   79,  87,  95,  103, 111, 119};
  for (int j = 0; j < 32; ++j) CHECK(b.qs[j] == want[j]);
}

TEST_CASE("q4_0 quantize: d = max/-8, halfway rounds up, top value clamps to 15", "[quants]") {
  // x_j = (j - 16) / 4: max = -4 (first largest |x|) -> d = 0.5 (0x3800), id = 2,
  // q_j = min(15, trunc(j/2 + 0.5)); j = 31 gives 16 -> clamped to 15.
  std::array<float, 32> x{};
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) / 4.0f;
  const auto b = q4(x);
  CHECK(b.d == 0x3800);
  const std::array<uint8_t, 16> want = {0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4,
                                        0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
  for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == want[j]);
}

TEST_CASE("q4_0 quantize: all-zero block stores d = -0 and quants of 8", "[quants]") {
  // max = 0 -> d = 0 / -8 = -0.0 (f16 0x8000); id = 0; q = trunc(0 + 8.5) = 8.
  const auto b = q4(block_of({}));
  CHECK(b.d == 0x8000);
  for (int j = 0; j < 16; ++j) CHECK(b.qs[j] == 0x88);
}

TEST_CASE("q4_0 quantize: sign of the largest magnitude picks the sign of d", "[quants]") {
  SECTION("largest magnitude negative: d = +1") {
    // q = trunc(x + 8.5): -8 -> 0, 7 -> 15, 0.5 -> 9, -0.5 -> 8, 1.5 -> 10, -1.5 -> 7.
    const auto b = q4(block_of({-8.0f, 7.0f, 0.5f, -0.5f, 1.5f, -1.5f}));
    CHECK(b.d == 0x3c00);
    const std::array<uint8_t, 6> want = {0x80, 0x8f, 0x89, 0x88, 0x8a, 0x87};
    for (int j = 0; j < 6; ++j) CHECK(b.qs[j] == want[j]);
    for (int j = 6; j < 16; ++j) CHECK(b.qs[j] == 0x88);
  }
  SECTION("largest magnitude positive and first: d = -1, the opposite extreme clamps") {
    // x = 8 (first max) -> d = -1, id = -1: 8 -> 0; -8 -> 16.5 -> 16 -> 15; -7 -> 15; 0.5 -> 8.
    const auto b = q4(block_of({8.0f, -8.0f, -7.0f, 0.5f}));
    CHECK(b.d == 0xbc00);
    const std::array<uint8_t, 4> want = {0x80, 0x8f, 0x8f, 0x88};
    for (int j = 0; j < 4; ++j) CHECK(b.qs[j] == want[j]);
    float y[32];
    cpu::dequantize_row_q4_0(&b, y, 32);
    CHECK(y[0] == 8.0f);
    CHECK(y[1] == -7.0f);  // the clamp costs one step
  }
  SECTION("equal magnitudes: the first one wins") {
    const auto b = q4(block_of({-8.0f, 8.0f}));
    CHECK(b.d == 0x3c00);
    CHECK(b.qs[0] == 0x80);
    CHECK(b.qs[1] == 0x8f);
  }
}

TEST_CASE("quantize rows of several blocks equal the blocks quantized alone", "[quants]") {
  std::vector<float> row(32 * 3);
  for (size_t i = 0; i < row.size(); ++i) row[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + static_cast<float>(i / 32));
  std::vector<block_q8_0> r8(3);
  std::vector<block_q4_0> r4(3);
  cpu::quantize_row_q8_0(row.data(), r8.data(), 96);
  cpu::quantize_row_q4_0(row.data(), r4.data(), 96);
  for (int b = 0; b < 3; ++b) {
    block_q8_0 one8{};
    block_q4_0 one4{};
    cpu::quantize_row_q8_0(row.data() + 32 * b, &one8, 32);
    cpu::quantize_row_q4_0(row.data() + 32 * b, &one4, 32);
    CHECK(std::memcmp(&one8, &r8[b], sizeof(one8)) == 0);
    CHECK(std::memcmp(&one4, &r4[b], sizeof(one4)) == 0);
  }
}

TEST_CASE("q8_0 and q4_0 round trip stay within half a step", "[quants]") {
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(-3.0f, 2.0f);
  constexpr int nb = 37;
  std::vector<float> x(32 * nb);
  for (int b = 0; b < nb; ++b) {
    const float s = std::pow(10.0f, scale(rng));
    for (int j = 0; j < 32; ++j) x[32 * b + j] = nd(rng) * s;
  }
  std::vector<block_q8_0> b8(nb);
  std::vector<block_q4_0> b4(nb);
  std::vector<float> y8(x.size()), y4(x.size());
  cpu::quantize_row_q8_0(x.data(), b8.data(), static_cast<int64_t>(x.size()));
  cpu::quantize_row_q4_0(x.data(), b4.data(), static_cast<int64_t>(x.size()));
  cpu::dequantize_row_q8_0(b8.data(), y8.data(), static_cast<int64_t>(x.size()));
  cpu::dequantize_row_q4_0(b4.data(), y4.data(), static_cast<int64_t>(x.size()));
  for (int b = 0; b < nb; ++b) {
    const float d8 = std::fabs(fp16_to_fp32(b8[b].d));
    const float d4 = std::fabs(fp16_to_fp32(b4[b].d));
    for (int j = 0; j < 32; ++j) {
      const size_t i = static_cast<size_t>(32 * b + j);
      // Half a step, plus the f16 rounding of d (relative 2^-11) times the largest quant.
      CHECK(std::fabs(y8[i] - x[i]) <= d8 * (0.5f + 127.0f / 2048.0f) + 1e-30f);
      // q4_0's range is [-8d, 7d]: elements within half a step of +8d (i.e. of -max) clamp
      // to 7d and may be off by up to one step; ggml accepts the same.
      const float t = x[i] / fp16_to_fp32(b4[b].d);
      const float bound = (t > 7.5f ? 1.0f : 0.5f) + 8.0f / 2048.0f;
      CHECK(std::fabs(y4[i] - x[i]) <= d4 * bound + 1e-30f);
    }
  }
}

TEST_CASE("f16 and bf16 row round trips stay within half an ulp", "[quants]") {
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  std::vector<float> x(301);
  for (auto& v : x) v = nd(rng);
  std::vector<uint16_t> h(x.size()), bf(x.size());
  std::vector<float> yh(x.size()), yb(x.size());
  const auto k = static_cast<int64_t>(x.size());
  cpu::convert_row_f32_to_f16(x.data(), h.data(), k);
  cpu::convert_row_f32_to_bf16(x.data(), bf.data(), k);
  cpu::convert_row_f16_to_f32(h.data(), yh.data(), k);
  cpu::convert_row_bf16_to_f32(bf.data(), yb.data(), k);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(std::fabs(yh[i] - x[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -11) + std::ldexp(1.0f, -25));
    CHECK(std::fabs(yb[i] - x[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -8));
  }
}

TEST_CASE("f32 -> f16 edge values", "[quants][fp16]") {
  auto h = [](float v) {
    uint16_t r = 0;
    cpu::convert_row_f32_to_f16(&v, &r, 1);
    return r;
  };
  CHECK(h(1.0f) == 0x3c00);
  CHECK(h(-2.0f) == 0xc000);
  CHECK(h(65504.0f) == 0x7bff);        // max finite
  CHECK(h(65519.0f) == 0x7bff);        // below the halfway point to 65536
  CHECK(h(65520.0f) == 0x7c00);        // halfway -> even -> overflows to inf
  CHECK(h(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(h(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK((h(std::numeric_limits<float>::quiet_NaN()) & 0x7fff) > 0x7c00);
  CHECK(h(std::ldexp(1.0f, -14)) == 0x0400);        // min normal
  CHECK(h(std::ldexp(1023.0f, -24)) == 0x03ff);     // max subnormal
  CHECK(h(std::ldexp(1.0f, -24)) == 0x0001);        // min subnormal
  CHECK(h(std::ldexp(1.0f, -25)) == 0x0000);        // tie between 0 and 1 -> even 0
  CHECK(h(std::ldexp(1.5f, -25)) == 0x0001);        // above the tie
  CHECK(h(std::ldexp(3.0f, -25)) == 0x0002);        // tie between 1 and 2 -> even 2
  CHECK(h(-0.0f) == 0x8000);
  CHECK(h(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);         // tie -> even
  CHECK(h(1.0f + 3.0f * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(h(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3c01);
}

TEST_CASE("f16 -> f32 edge values", "[quants][fp16]") {
  auto f = [](uint16_t v) {
    float r = 0;
    cpu::convert_row_f16_to_f32(&v, &r, 1);
    return r;
  };
  CHECK(f(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(f(0x0400) == std::ldexp(1.0f, -14));
  CHECK(f(0x7bff) == 65504.0f);
  CHECK(f(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(f(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f(0x7e00)));
  CHECK(std::isnan(f(0x7c01)));
  CHECK(std::signbit(f(0x8000)));
  CHECK(f(0x8000) == 0.0f);
  CHECK(f(0xc000) == -2.0f);
}

TEST_CASE("f32 <-> bf16 edge values", "[quants][fp16]") {
  auto b = [](uint32_t bits) {
    const float v = bits_to_f32(bits);
    uint16_t r = 0;
    cpu::convert_row_f32_to_bf16(&v, &r, 1);
    return r;
  };
  CHECK(b(0x3f800000u) == 0x3f80);
  CHECK(b(0x3f808000u) == 0x3f80);  // tie -> even (down)
  CHECK(b(0x3f818000u) == 0x3f82);  // tie -> even (up)
  CHECK(b(0x3f808001u) == 0x3f81);  // above the tie
  CHECK(b(0x7f800000u) == 0x7f80);  // inf
  CHECK(b(0xff800000u) == 0xff80);  // -inf
  CHECK(b(0x7f7fffffu) == 0x7f80);  // max finite f32 rounds up to inf
  CHECK(b(0x7fc00000u) == 0x7fc0);  // quiet NaN
  CHECK(b(0x7f800001u) == 0x7fc0);  // signalling NaN is quieted (ggml: | 64)
  CHECK(b(0x00000001u) == 0x0000);  // tiny subnormal rounds to zero
  CHECK(b(0x00018000u) == 0x0002);  // subnormal tie -> even
  CHECK(b(0x80000000u) == 0x8000);  // -0
  uint16_t in[3] = {0x3f80, 0x0001, 0xff80};
  float out[3];
  cpu::convert_row_bf16_to_f32(in, out, 3);
  CHECK(out[0] == 1.0f);
  CHECK(f32_to_bits(out[1]) == 0x00010000u);
  CHECK(out[2] == -std::numeric_limits<float>::infinity());
}

TEST_CASE("q4_K dequant of a hand-built block follows d*sc*q - dmin*m", "[quants]") {
  // Sub-block scales and mins (6 bits each) packed by hand as ggml's get_scale_min_k4 reads
  // them: bytes 0-3 = sc[0..3] | (sc[4..7] >> 4) << 6; bytes 4-7 = m[0..3] | (m[4..7] >> 4) << 6;
  // bytes 8-11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4.
  const std::array<int, 8> sc = {1, 2, 3, 4, 17, 33, 50, 63};
  const std::array<int, 8> mn = {0, 1, 5, 63, 2, 20, 40, 7};
  const std::array<uint8_t, 12> packed = {0x41, 0x82, 0xc3, 0xc4, 0x00, 0x41,
                                          0x85, 0x3f, 0x21, 0x41, 0x82, 0x7f};
  block_q4_K blk[2]{};
  for (int i = 0; i < 2; ++i) {
    blk[i].d = i == 0 ? 0x3c00 : 0x3555;     // 1.0, 0.33325
    blk[i].dmin = i == 0 ? 0x3800 : 0x2e66;  // 0.5, 0.1
    std::memcpy(blk[i].scales, packed.data(), 12);
    for (int j = 0; j < 128; ++j) blk[i].qs[j] = static_cast<uint8_t>(j * 7 + 3 + 11 * i);
  }
  std::vector<float> y(512);
  cpu::dequantize_row_q4_K(blk, y.data(), 512);
  for (int i = 0; i < 2; ++i) {
    const float d = fp16_to_fp32(blk[i].d);
    const float dmin = fp16_to_fp32(blk[i].dmin);
    for (int e = 0; e < 256; ++e) {
      const int chunk = e / 64;
      const int w = e % 64;
      const int sub = 2 * chunk + (w >= 32 ? 1 : 0);
      const uint8_t byte = blk[i].qs[32 * chunk + (w % 32)];
      const int q = w < 32 ? (byte & 0xf) : (byte >> 4);
      const float want = (d * static_cast<float>(sc[sub])) * static_cast<float>(q) - dmin * static_cast<float>(mn[sub]);
      INFO("block " << i << " element " << e);
      CHECK(y[256 * i + e] == want);
    }
  }
  CHECK(y[0] == 1.0f * 1 * 3 - 0.0f);  // qs[0] = 3, sub-block 0: sc 1, m 0
  CHECK(y[255] == 63.0f * 7.0f - 0.5f * 7.0f);  // qs[127] = 892 % 256 = 124 -> high nibble 7
}

TEST_CASE("q6_K dequant of a hand-built block follows d*sc*(q-32)", "[quants]") {
  // Element e of a 256-block: half h = e/128, quarter r = (e%128)/32, l = e%32.
  // Low 4 bits: ql[64h + l + 32*(r&1)], nibble r>>1; high 2 bits: qh[32h + l] bits 2r..2r+1;
  // scale sc[8h + l/16 + 2r].
  const std::array<int8_t, 16> sc = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -128};
  block_q6_K blk[2]{};
  std::vector<int> q6(512);
  for (int i = 0; i < 2; ++i) {
    blk[i].d = i == 0 ? 0x3c00 : 0x2e66;
    std::memcpy(blk[i].scales, sc.data(), 16);
    for (int e = 0; e < 256; ++e) {
      const int v = (e * 37 + 5 + 13 * i) % 64;
      q6[256 * i + e] = v;
      const int h = e / 128, r = (e % 128) / 32, l = e % 32;
      uint8_t& lo = blk[i].ql[64 * h + l + 32 * (r & 1)];
      lo = static_cast<uint8_t>(lo | ((v & 0xf) << (4 * (r >> 1))));
      uint8_t& hi = blk[i].qh[32 * h + l];
      hi = static_cast<uint8_t>(hi | ((v >> 4) << (2 * r)));
    }
  }
  std::vector<float> y(512);
  cpu::dequantize_row_q6_K(blk, y.data(), 512);
  for (int i = 0; i < 2; ++i) {
    const float d = fp16_to_fp32(blk[i].d);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, r = (e % 128) / 32, l = e % 32;
      const float want = d * static_cast<float>(sc[8 * h + l / 16 + 2 * r]) * static_cast<float>(q6[256 * i + e] - 32);
      INFO("block " << i << " element " << e);
      CHECK(y[256 * i + e] == want);
    }
  }
  // Spot check from the raw bytes: element 0 = ql[0] low | qh[0] bits 0-1; v = 5 -> (5-32)*1*1.
  CHECK(y[0] == -27.0f);
  // Element 254: h 1, r 3, l 30, v = (254*37+5) % 64 = 59; scale sc[8+1+6] = -128.
  CHECK(y[254] == -128.0f * 27.0f);
}

TEST_CASE("dequantize_row and quantize_row dispatch by dtype", "[quants]") {
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i)) * 3.0f;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::q8_0, DType::q4_0}) {
    INFO(dtype_name(dt));
    std::vector<uint8_t> bytes(dtype_row_size(dt, 64));
    REQUIRE(cpu::quantize_row(dt, x.data(), bytes.data(), 64).ok());
    std::vector<float> y(64), y2(64);
    cpu::dequantize_row(dt, bytes.data(), y.data(), 64);
    switch (dt) {
      case DType::f32: y2 = x; break;
      case DType::f16: cpu::convert_row_f16_to_f32(bytes.data(), y2.data(), 64); break;
      case DType::bf16: cpu::convert_row_bf16_to_f32(bytes.data(), y2.data(), 64); break;
      case DType::q8_0: cpu::dequantize_row_q8_0(bytes.data(), y2.data(), 64); break;
      case DType::q4_0: cpu::dequantize_row_q4_0(bytes.data(), y2.data(), 64); break;
      default: break;
    }
    CHECK(y == y2);
    CHECK(std::fabs(y[5] - x[5]) < 0.3f);
  }
  std::vector<uint8_t> dst(1024);
  const Status odd = cpu::quantize_row(DType::q4_0, x.data(), dst.data(), 33);
  CHECK(odd.code() == ErrorCode::invalid_argument);
  CHECK(odd.message().find("33") != std::string::npos);
  const Status k = cpu::quantize_row(DType::q4_K, x.data(), dst.data(), 256);
  CHECK(k.code() == ErrorCode::unsupported);
  CHECK(k.message().find("q4_K") != std::string::npos);
}

TEST_CASE("quantizers keep non-finite input defined", "[quants]") {
  auto x = block_of({1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()});
  const auto b8 = q8(x);
  const auto b4 = q4(x);
  // Values are whatever the clamps give; the point is no UB (UBSan) and no crash.
  CHECK(b8.qs[3] == 0);
  CHECK((b4.qs[3] & 0xf) <= 15);
}
