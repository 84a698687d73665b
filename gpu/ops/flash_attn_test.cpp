// Conformance: flash_attn (split-K decode form and tiled prompt form) against an f64 reference
// over head_dim 64/96/128, GQA ratios 1..16 (head blocks of 1, 2, 4, 6, 7, 8), caches shorter than
// / at / above the 64-position tile and chunk, sliding windows that cut the cache, m = 1, 3, 5, 17,
// 64, f16 and f32 caches. Cache positions after each row's pos hold random data that must be
// ignored. Every shader variant the device runs (portable, subgroup, fp16 for f16 caches);
// the others are WARNed as skipped. Validation layer on.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>

#include "core/fp16.h"
#include "gpu/ops/flash_attn.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/variants.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

// f32 dot products and online soft_max against f64: a few ulps per output. fp16: q and p
// rounded to f16 (relative 2^-11 each) and f16 pair sums in Q.K; measured NMSE <= 1e-6 with the
// test's 4x sharpened scale.
double tolerance(ops::ShaderVariant v) {
  return v == ops::ShaderVariant::fp16 ? 1e-5 : 1e-9;
}

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes == 0 ? 4 : bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

struct Shape {
  int64_t head_dim, n_head, n_head_kv, n_ctx, m;
  uint32_t n_swa;
};

// Decode-like rows (m small) get scattered positions; prompt rows the last m positions.
std::vector<int32_t> positions(const Shape& sh) {
  std::vector<int32_t> pos(static_cast<size_t>(sh.m));
  for (int64_t i = 0; i < sh.m; ++i) {
    pos[i] =
        static_cast<int32_t>(ops::flash_attn_uses_split(sh.m) ? (i * 37 + sh.n_ctx - 1) % sh.n_ctx
                                                              : sh.n_ctx - sh.m + i);
  }
  return pos;
}

struct Run {
  std::vector<float> out;
  Status status;
};

Run run(testing::VulkanFixture& fx, const Shape& sh, DType kv_type, const std::vector<float>& q,
        const std::vector<float>& k, const std::vector<float>& v, const std::vector<int32_t>& pos,
        float scale, ops::ShaderVariant variant = ops::ShaderVariant::automatic) {
  std::vector<uint8_t> kb, vb;
  for (auto [src, dst] : {std::pair{&k, &kb}, std::pair{&v, &vb}}) {
    if (kv_type == DType::f16) {
      dst->resize(src->size() * 2);
      for (size_t i = 0; i < src->size(); ++i) {
        const uint16_t h = fp32_to_fp16((*src)[i]);
        std::memcpy(dst->data() + 2 * i, &h, 2);
      }
    } else {
      dst->resize(src->size() * 4);
      std::memcpy(dst->data(), src->data(), dst->size());
    }
  }
  Buffer qbuf = make(fx, q.data(), q.size() * 4, "q");
  Buffer kbuf = make(fx, kb.data(), kb.size(), "cache_k");
  Buffer vbuf = make(fx, vb.data(), vb.size(), "cache_v");
  Buffer pbuf = make(fx, pos.data(), pos.size() * 4, "pos");
  const uint64_t scratch = ops::flash_attn_scratch_bytes(sh.head_dim, sh.n_head, sh.n_ctx, sh.m);
  Buffer sbuf = make(fx, nullptr, scratch, "scratch");
  Buffer dbuf = make(fx, nullptr, q.size() * 4, "dst");
  REQUIRE(fx.rec->begin().ok());
  Run r;
  r.status =
      ops::flash_attn(*fx.rec, qbuf.slice(), kbuf.slice(), vbuf.slice(), kv_type, pbuf.slice(),
                      sh.head_dim, sh.n_head, sh.n_head_kv, sh.n_ctx, sh.m, sh.n_swa, scale,
                      scratch ? sbuf.slice() : BufferSlice{}, dbuf.slice(), variant);
  if (!r.status.ok()) return r;
  REQUIRE(fx.rec->submit_and_wait().ok());
  r.out = testing::read_f32(dbuf, q.size());
  return r;
}

std::vector<float> as_cached(const std::vector<float>& x, DType kv_type) {
  if (kv_type == DType::f32) return x;
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
  return y;
}

TEST_CASE("flash_attn matches the reference (split-K and tiled, windows, GQA, f16/f32 caches)",
          "[gpu][flash_attn]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const Shape shapes[] = {
      {64, 4, 2, 1, 1, 0},    {128, 12, 2, 63, 1, 0},   {128, 12, 2, 64, 3, 0},
      {128, 12, 2, 65, 3, 5}, {64, 6, 6, 200, 1, 70},   {64, 4, 1, 129, 5, 64},
      {96, 2, 1, 97, 3, 0},   {128, 12, 2, 130, 17, 0}, {64, 4, 2, 129, 17, 40},
      {128, 4, 1, 64, 64, 0}, {64, 8, 2, 300, 64, 100}, {96, 3, 3, 65, 9, 1},
      {128, 28, 4, 70, 2, 0}, {64, 16, 1, 65, 17, 30},  // head blocks of 7; two blocks of 8 per kv
                                                        // head
  };
  for (DType kv_type : {DType::f32, DType::f16}) {
    const auto variants = testing::variants_or_warn(
        fx.device->caps(), ops::flash_attn_variants(*fx.device, kv_type),
        kv_type == DType::f16
            ? std::initializer_list<ops::ShaderVariant>{ops::ShaderVariant::subgroup,
                                                        ops::ShaderVariant::fp16}
            : std::initializer_list<ops::ShaderVariant>{ops::ShaderVariant::subgroup},
        fmt::format("flash_attn_{}_f32", dtype_name(kv_type)));
    for (ops::ShaderVariant variant : variants) {
      for (const Shape& sh : shapes) {
        const auto seed = static_cast<uint32_t>(sh.head_dim * 7 + sh.n_ctx * 3 + sh.m + sh.n_swa);
        const auto q =
            testing::random_f32(static_cast<size_t>(sh.head_dim * sh.n_head * sh.m), seed);
        const size_t n_kv = static_cast<size_t>(sh.head_dim * sh.n_head_kv * sh.n_ctx);
        const auto k = as_cached(testing::random_f32(n_kv, seed + 1), kv_type);
        const auto v = as_cached(testing::random_f32(n_kv, seed + 2), kv_type);
        const auto pos = positions(sh);
        const float scale = 1.0f / std::sqrt(static_cast<float>(sh.head_dim)) *
                            4.0f;  // sharper than real: tests the max
        const auto expected = testing::ref_flash_attn(q, k, v, pos, sh.head_dim, sh.n_head,
                                                      sh.n_head_kv, sh.n_swa, scale);
        const Run r = run(fx, sh, kv_type, q, k, v, pos, scale, variant);
        INFO(r.status.message());
        REQUIRE(r.status.ok());
        const double err = test::nmse(r.out, expected);
        INFO(fmt::format(
            "{} cache {} head_dim={} n_head={}/{} n_ctx={} m={} n_swa={} split={} nmse={:.3g}",
            dtype_name(kv_type), ops::shader_variant_name(variant), sh.head_dim, sh.n_head,
            sh.n_head_kv, sh.n_ctx, sh.m, sh.n_swa, ops::flash_attn_uses_split(sh.m), err));
        REQUIRE(err < tolerance(variant));
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("flash_attn gives NaN rows for positions outside the cache and rejects bad shapes",
          "[gpu][flash_attn]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  for (int64_t m : {2, 12}) {  // split and tiled forms
    const Shape sh{64, 2, 1, 70, m, 0};
    const auto q = testing::random_f32(static_cast<size_t>(64 * 2 * m), 5);
    const auto k = testing::random_f32(64 * 70, 6), v = testing::random_f32(64 * 70, 7);
    std::vector<int32_t> pos(static_cast<size_t>(m), 10);
    pos[0] = -1;
    pos[1] = 70;  // == n_ctx
    const Run r = run(fx, sh, DType::f32, q, k, v, pos, 0.125f);
    REQUIRE(r.status.ok());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t c = 0; c < 128; ++c) {
        INFO(fmt::format("m={} row {} value {}", m, i, c));
        REQUIRE(std::isnan(r.out[static_cast<size_t>(i * 128 + c)]) == (i < 2));
      }
    }
  }
  Buffer b = make(fx, nullptr, 1 << 16, "any");
  REQUIRE(fx.rec->begin().ok());
  const BufferSlice s = b.slice();
  auto fa = [&](DType t, int64_t head_dim, int64_t n_head, int64_t n_head_kv,
                const BufferSlice& scratch) {
    return ops::flash_attn(*fx.rec, s, s, s, t, s, head_dim, n_head, n_head_kv, 16, 1, 0, 1.f,
                           scratch, s)
        .code();
  };
  CHECK(fa(DType::q8_0, 64, 2, 1, s) == ErrorCode::unsupported);
  CHECK(fa(DType::f32, 64, 3, 2, s) == ErrorCode::invalid_argument);   // n_head not a multiple
  CHECK(fa(DType::f32, 257, 1, 1, s) == ErrorCode::invalid_argument);  // head_dim above 256
  CHECK(fa(DType::f16, 63, 1, 1, s) == ErrorCode::invalid_argument);   // odd head_dim, f16 cache
  CHECK(fa(DType::f32, 64, 2, 1, BufferSlice{&b, 0, 8}) ==
        ErrorCode::invalid_argument);  // scratch too small
  CHECK(fa(DType::f32, 64, 2, 1, s) == ErrorCode::ok);
  REQUIRE(fx.rec->submit_and_wait().ok());
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
