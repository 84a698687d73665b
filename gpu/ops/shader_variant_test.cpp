// Shader variants: every name an op can pick is embedded (shaders::find_spirv); the selection
// rules of gpu/ops/shader_variant.h on this device and on made-up devices without features;
// TANDEM_VK_PORTABLE_SHADERS; quantize_q8_1 bit-exact against the CPU's q8_0 activation
// quantization; q8_1 blocks shared by several integer-dot mat-vecs. Validation layer on.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/fp16.h"
#include "gpu/ops/flash_attn.h"
#include "gpu/ops/mul_mat_id.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/quantize_q8_1.h"
#include "gpu/ops/top_k.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/reference_q8.h"
#include "gpu/testing/vulkan_fixture.h"
#include "shaders/spirv.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

using ops::ShaderVariant;

constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::q8_0, DType::q4_0};

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.empty()) {
      ::unsetenv(name_);
    } else {
      ::setenv(name_, old_.c_str(), 1);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
};

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

TEST_CASE("shader variant selection follows the device caps and the portable switch", "[shaders]") {
  const ShaderVariant offered[] = {ShaderVariant::intdot, ShaderVariant::fp16,
                                   ShaderVariant::subgroup};
  const std::string base = "mul_mat_vec_q4_0_f32";
  DeviceCaps none;  // a device with no optional feature
  auto r = ops::pick_shader_variant(none, "op", base, offered, ShaderVariant::automatic);
  REQUIRE(r.ok());
  CHECK(*r == base);
  CHECK(ops::runnable_variants(none, base, offered) ==
        std::vector<ShaderVariant>{ShaderVariant::portable});
  r = ops::pick_shader_variant(none, "op", base, offered, ShaderVariant::intdot);
  CHECK(r.status().code() == ErrorCode::not_found);
  CHECK(r.status().message().find("integer_dot_product") != std::string::npos);
  // Not offered at all.
  r = ops::pick_shader_variant(none, "op", base, std::span<const ShaderVariant>{},
                               ShaderVariant::subgroup);
  CHECK(r.status().code() == ErrorCode::not_found);

  DeviceCaps all;
  all.subgroup_arithmetic = all.fp16 = all.integer_dot_product = true;
  r = ops::pick_shader_variant(all, "op", base, offered, ShaderVariant::automatic);
  REQUIRE(r.ok());
  // fp16 is never automatic; intdot first where the build has it.
  CHECK(*r == (TANDEM_SHADERS_INTDOT     ? base + "_intdot"
               : TANDEM_SHADERS_SUBGROUP ? base + "_subgroup"
                                         : base));
  {
    ScopedEnv env("TANDEM_VK_PORTABLE_SHADERS", "1");
    CHECK(ops::portable_shaders_forced());
    r = ops::pick_shader_variant(all, "op", base, offered, ShaderVariant::automatic);
    REQUIRE(r.ok());
    CHECK(*r == base);
    // An explicit request is unaffected.
    if (TANDEM_SHADERS_SUBGROUP)
      CHECK(*ops::pick_shader_variant(all, "op", base, offered, ShaderVariant::subgroup) ==
            base + "_subgroup");
  }
  {
    ScopedEnv env("TANDEM_VK_PORTABLE_SHADERS", "0");
    CHECK_FALSE(ops::portable_shaders_forced());
  }
}

TEST_CASE("every variant an op can pick on this device is embedded", "[gpu][shaders]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const DeviceCaps& caps = fx.device->caps();
  INFO(fx.device->summary());
  std::vector<std::string> names = {"quantize_q8_1", "flash_attn_combine_f32"};
  for (DType t : k_dtypes) {
    for (ShaderVariant v : ops::mul_mat_vec_variants(*fx.device, t)) {
      auto name = ops::mul_mat_vec_variant(*fx.device, t, v);
      REQUIRE(name.ok());
      names.push_back(*name);
      names.push_back("mul_mat_vec_id" + name->substr(std::string("mul_mat_vec").size()));
    }
    for (ShaderVariant v : ops::mul_mat_id_variants(*fx.device, t)) {
      names.push_back(
          fmt::format("mul_mat_id_{}_f32{}", dtype_name(t), ops::shader_variant_suffix(v)));
    }
  }
  for (DType t : {DType::f32, DType::f16}) {
    for (ShaderVariant v : ops::flash_attn_variants(*fx.device, t)) {
      names.push_back(
          fmt::format("flash_attn_{}_f32{}", dtype_name(t), ops::shader_variant_suffix(v)));
    }
  }
  for (ShaderVariant v : ops::top_k_variants(*fx.device)) {
    names.push_back(fmt::format("top_k_f32{}", ops::shader_variant_suffix(v)));
  }
  for (const auto& n : names) {
    INFO(n);
    CHECK_FALSE(shaders::find_spirv(n).empty());
  }
  // lavapipe and every current GPU driver have all three features; a build whose compiler
  // lacked an extension says so here rather than testing less without a trace.
  if (caps.subgroup_arithmetic && !TANDEM_SHADERS_SUBGROUP) WARN("build has no subgroup variants");
  if (caps.fp16 && !TANDEM_SHADERS_FP16) WARN("build has no fp16 variants");
  if (caps.integer_dot_product && !TANDEM_SHADERS_INTDOT) WARN("build has no intdot variants");

  // Automatic choices on this device (q8_1 scratch given / not given).
  const bool intdot = caps.integer_dot_product && TANDEM_SHADERS_INTDOT;
  const bool sub = caps.subgroup_arithmetic && TANDEM_SHADERS_SUBGROUP;
  CHECK(*ops::mul_mat_vec_variant(*fx.device, DType::q4_0, ShaderVariant::automatic, true) ==
        (intdot ? "mul_mat_vec_q4_0_f32_intdot"
         : sub  ? "mul_mat_vec_q4_0_f32_subgroup"
                : "mul_mat_vec_q4_0_f32"));
  CHECK(*ops::mul_mat_vec_variant(*fx.device, DType::q4_0, ShaderVariant::automatic, false) ==
        (sub ? "mul_mat_vec_q4_0_f32_subgroup" : "mul_mat_vec_q4_0_f32"));
  CHECK(*ops::mul_mat_vec_variant(*fx.device, DType::f16, ShaderVariant::automatic, true) ==
        (sub ? "mul_mat_vec_f16_f32_subgroup" : "mul_mat_vec_f16_f32"));
  CHECK(ops::mul_mat_vec_variant(*fx.device, DType::f32, ShaderVariant::intdot).status().code() ==
        ErrorCode::not_found);
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("quantize_q8_1 reproduces the CPU's q8_0 activation quantization bit for bit",
          "[gpu][shaders]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  for (int64_t ncols : {32, 96, 1536 + 32}) {
    for (int64_t nrows : {1, 3, 70}) {  // 70 rows of 1568: blocks above one workgroup of 64
      auto x = testing::random_f32(static_cast<size_t>(ncols * nrows),
                                   static_cast<uint32_t>(ncols + nrows), -3.f, 3.f);
      // Block 0: all zero (d = 0); block 1 (if any): values on exact half steps of d = 127/127.
      for (int j = 0; j < 32; ++j) x[j] = 0.0f;
      if (ncols * nrows >= 64) {
        for (int j = 0; j < 32; ++j)
          x[32 + j] = (j == 0) ? 127.0f : static_cast<float>(j % 7) - 3.5f;
      }
      const auto want = testing::quantize_q8(x);
      Buffer xb = make(fx, x.data(), x.size() * 4, "x");
      const uint64_t bytes = ops::q8_1_bytes(ncols, nrows);
      Buffer qb = make(fx, nullptr, bytes + 8, "q8_1");
      REQUIRE(fx.rec->begin().ok());
      const Status s = ops::quantize_q8_1(*fx.rec, xb.slice(), ncols, nrows, qb.slice(8, bytes));
      INFO(s.message());
      REQUIRE(s.ok());
      REQUIRE(fx.rec->submit_and_wait().ok());
      std::vector<uint32_t> words(bytes / 4);
      REQUIRE(qb.read(words.data(), bytes, 8).ok());
      INFO(fmt::format("ncols={} nrows={}", ncols, nrows));
      REQUIRE(want.size() * 10 == words.size());
      for (size_t b = 0; b < want.size(); ++b) {
        INFO("block " << b);
        float d, sd;
        std::memcpy(&d, &words[10 * b], 4);
        std::memcpy(&sd, &words[10 * b + 1], 4);
        REQUIRE(d == want[b].d);
        REQUIRE(sd == want[b].d * static_cast<float>(want[b].sum));
        REQUIRE(std::memcmp(&words[10 * b + 2], want[b].qs, 32) == 0);
      }
    }
  }
  Buffer b = make(fx, nullptr, 4096, "any");
  REQUIRE(fx.rec->begin().ok());
  CHECK(ops::quantize_q8_1(*fx.rec, b.slice(), 48, 1, b.slice()).code() ==
        ErrorCode::invalid_argument);
  CHECK(ops::quantize_q8_1(*fx.rec, b.slice(), 32, 1, b.slice(0, 39)).code() ==
        ErrorCode::invalid_argument);
  CHECK(ops::quantize_q8_1(*fx.rec, b.slice(), 32, 1, b.slice(2, 40)).code() ==
        ErrorCode::invalid_argument);
  REQUIRE(fx.rec->submit_and_wait().ok());
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("integer-dot mat-vecs share one quantized activation vector", "[gpu][shaders]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  const auto variants = ops::mul_mat_vec_variants(*fx.device, DType::q4_0);
  if (std::find(variants.begin(), variants.end(), ShaderVariant::intdot) == variants.end()) {
    WARN("SKIPPED: no intdot variant on " << fx.device->summary());
    return;
  }
  const int64_t k = 160, rows = 45;
  const auto gate = testing::random_weights(DType::q4_0, k, rows, 1);
  const auto up = testing::random_weights(DType::q8_0, k, rows, 2);
  const auto x = testing::random_f32(k, 3);
  const auto xq = testing::q8_values(x);
  const auto want_g = testing::ref_mul_mat(DType::q4_0, gate.data(), dtype_row_size(DType::q4_0, k),
                                           k, rows, xq, 1);
  const auto want_u =
      testing::ref_mul_mat(DType::q8_0, up.data(), dtype_row_size(DType::q8_0, k), k, rows, xq, 1);
  Buffer gb = make(fx, gate.data(), gate.size(), "ffn_gate");
  Buffer ub = make(fx, up.data(), up.size(), "ffn_up");
  Buffer xb = make(fx, x.data(), x.size() * 4, "x");
  Buffer qb = make(fx, nullptr, ops::q8_1_bytes(k, 1), "q8_1");
  Buffer db = make(fx, nullptr, 2 * rows * 4, "dst");
  REQUIRE(fx.rec->begin().ok());
  ops::MulMatVecOptions o;
  o.q8_1 = qb.slice();
  // The first call quantizes x; the second reads the same blocks.
  REQUIRE(ops::mul_mat_vec(*fx.rec, DType::q4_0, gb.slice(), k, rows, xb.slice(),
                           db.slice(0, rows * 4), o)
              .ok());
  o.q8_1_ready = true;
  REQUIRE(ops::mul_mat_vec(*fx.rec, DType::q8_0, ub.slice(), k, rows, xb.slice(),
                           db.slice(rows * 4, rows * 4), o)
              .ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  CHECK(fx.rec->dispatch_count() == 3);
  const auto out = testing::read_f32(db, 2 * rows);
  CHECK(test::nmse(std::span(out).first(rows), want_g) < 1e-10);
  CHECK(test::nmse(std::span(out).subspan(rows), want_u) < 1e-10);

  // An explicit intdot request without the q8_1 slice is an argument error, recorded nothing.
  REQUIRE(fx.rec->begin().ok());
  ops::MulMatVecOptions bad;
  bad.variant = ShaderVariant::intdot;
  const Status s =
      ops::mul_mat_vec(*fx.rec, DType::q4_0, gb.slice(), k, rows, xb.slice(), db.slice(), bad);
  CHECK(s.code() == ErrorCode::invalid_argument);
  CHECK(s.message().find("q8_1") != std::string::npos);
  REQUIRE(fx.rec->submit_and_wait().ok());
  CHECK(fx.rec->dispatch_count() == 0);
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("flash_attn variants read f16 caches starting at any 2-byte offset", "[gpu][shaders]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  // The fp16 variant loads K as f16 pairs: an odd element offset straddles two words.
  const int64_t hd = 64, n_head = 4, n_kv = 2, n_ctx = 70;
  const std::vector<int32_t> pos = {69, 5};
  const auto q = testing::random_f32(static_cast<size_t>(hd * n_head * 2), 1);
  auto k = testing::random_f32(static_cast<size_t>(hd * n_kv * n_ctx), 2);
  auto v = testing::random_f32(k.size(), 3);
  std::vector<uint16_t> k16(k.size() + 1), v16(v.size() + 1);  // element 0: padding
  for (size_t i = 0; i < k.size(); ++i) {
    k16[i + 1] = fp32_to_fp16(k[i]);
    v16[i + 1] = fp32_to_fp16(v[i]);
    k[i] = fp16_to_fp32(k16[i + 1]);
    v[i] = fp16_to_fp32(v16[i + 1]);
  }
  const float scale = 0.125f;
  const auto want = testing::ref_flash_attn(q, k, v, pos, hd, n_head, n_kv, 0, scale);
  Buffer qb = make(fx, q.data(), q.size() * 4, "q");
  Buffer kb = make(fx, k16.data(), k16.size() * 2, "cache_k");
  Buffer vb = make(fx, v16.data(), v16.size() * 2, "cache_v");
  Buffer pb = make(fx, pos.data(), pos.size() * 4, "pos");
  Buffer sb = make(fx, nullptr, ops::flash_attn_scratch_bytes(hd, n_head, n_ctx, 2), "scratch");
  Buffer db = make(fx, nullptr, q.size() * 4, "dst");
  for (ShaderVariant variant : ops::flash_attn_variants(*fx.device, DType::f16)) {
    INFO(ops::shader_variant_name(variant));
    REQUIRE(fx.rec->begin().ok());
    const Status s = ops::flash_attn(*fx.rec, qb.slice(), kb.slice(2, k.size() * 2),
                                     vb.slice(2, v.size() * 2), DType::f16, pb.slice(), hd, n_head,
                                     n_kv, n_ctx, 2, 0, scale, sb.slice(), db.slice(), variant);
    INFO(s.message());
    REQUIRE(s.ok());
    REQUIRE(fx.rec->submit_and_wait().ok());
    // flash_attn_test.cpp's bounds: 1e-9 (f32 math), 1e-5 (fp16).
    CHECK(test::nmse(testing::read_f32(db, q.size()), want) <
          (variant == ShaderVariant::fp16 ? 1e-5 : 1e-9));
  }
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
