// Conformance: top_k (router gating + selection + renormalised weights) against the reference of
// cpu/reference/ops.h route(), softmax and sigmoid gating, n_expert below / at / above the
// 64-invocation workgroup up to the 1024 limit, k from 1 to n_expert. Ids are compared as a
// ranking that may swap experts whose probabilities tie within f32 rounding; integer logits
// (exact ties) must give exactly the reference order (ties to the lower index). Each shader
// variant the device runs (portable; subgroup arg-max and softmax sums) is checked that way;
// the others are WARNed as skipped. Validation on.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <set>

#include "gpu/ops/top_k.h"
#include "gpu/testing/reference.h"
#include "gpu/testing/variants.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

// GPU exp() in f32 vs the f64 reference rounded to f32: a few ulps.
constexpr double k_prob_tol = 1e-6;

Buffer make(testing::VulkanFixture& fx, const void* data, size_t bytes, const char* name) {
  auto b = testing::host_buffer(*fx.device, data, bytes, name);
  REQUIRE(b.ok());
  return std::move(b).value();
}

struct Out {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Out run(testing::VulkanFixture& fx, ExpertGating gating, const std::vector<float>& logits,
        int64_t n_expert, int64_t k, ops::ShaderVariant variant = ops::ShaderVariant::automatic) {
  const int64_t m = static_cast<int64_t>(logits.size()) / n_expert;
  Buffer lb = make(fx, logits.data(), logits.size() * 4, "ffn_gate_inp_out");
  Buffer ib = make(fx, nullptr, static_cast<size_t>(k * m) * 4, "ids");
  Buffer wb = make(fx, nullptr, static_cast<size_t>(k * m) * 4, "weights");
  REQUIRE(fx.rec->begin().ok());
  const Status s =
      ops::top_k(*fx.rec, gating, lb.slice(), n_expert, m, k, ib.slice(), wb.slice(), variant);
  INFO(s.message());
  REQUIRE(s.ok());
  REQUIRE(fx.rec->submit_and_wait().ok());
  Out o;
  o.ids.resize(static_cast<size_t>(k * m));
  REQUIRE(ib.read(o.ids.data(), o.ids.size() * 4, 0).ok());
  o.weights = testing::read_f32(wb, o.ids.size());
  return o;
}

TEST_CASE("top_k matches the router reference (softmax and sigmoid)", "[gpu][top_k]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const auto variants =
      testing::variants_or_warn(fx.device->caps(), ops::top_k_variants(*fx.device),
                                {ops::ShaderVariant::subgroup}, "top_k_f32");
  for (ops::ShaderVariant variant : variants) {
    for (ExpertGating gating : {ExpertGating::softmax, ExpertGating::sigmoid}) {
      for (int64_t n_expert : {1, 4, 32, 63, 64, 65, 128, 1024}) {
        for (int64_t k : {int64_t{1}, int64_t{4}, int64_t{6}, n_expert}) {
          if (k > n_expert) continue;
          for (int64_t m : {1, 3, 17}) {
            const auto seed =
                static_cast<uint32_t>(n_expert * 31 + k * 7 + m + static_cast<int>(gating));
            const auto logits =
                testing::random_f32(static_cast<size_t>(n_expert * m), seed, -6.f, 6.f);
            const auto ref = testing::ref_top_k(static_cast<uint32_t>(gating), logits, n_expert, k);
            const Out out = run(fx, gating, logits, n_expert, k, variant);
            INFO(fmt::format("{} gating={} n_expert={} k={} m={}",
                             ops::shader_variant_name(variant), static_cast<int>(gating), n_expert,
                             k, m));
            for (int64_t r = 0; r < m; ++r) {
              const float* p = ref.probs.data() + r * n_expert;
              std::set<int32_t> seen;
              double sum = 0;
              for (int64_t s = 0; s < k; ++s) {
                const int32_t g = out.ids[static_cast<size_t>(r * k + s)];
                const int32_t e = ref.ids[static_cast<size_t>(r * k + s)];
                INFO(fmt::format("row {} slot {}: gpu {} ref {}", r, s, g, e));
                REQUIRE(g >= 0);
                REQUIRE(g < n_expert);
                REQUIRE(seen.insert(g).second);
                // Slot s holds an expert whose probability ties the reference's s-th largest.
                REQUIRE(std::abs(p[g] - p[e]) <= k_prob_tol * std::max(1.0f, p[e]));
                sum += p[g];
              }
              for (int64_t s = 0; s < k; ++s) {
                const double want =
                    p[out.ids[static_cast<size_t>(r * k + s)]] / std::max(sum, 6.103515625e-5);
                REQUIRE(std::abs(out.weights[static_cast<size_t>(r * k + s)] - want) <=
                        k_prob_tol * 4 * std::max(1.0, want));
              }
            }
          }
        }
      }
    }
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("top_k breaks exact ties towards the lower index and ranks NaN last", "[gpu][top_k]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  for (ExpertGating gating : {ExpertGating::softmax, ExpertGating::sigmoid}) {
    const int64_t n_expert = 70, k = 9, m = 5;
    std::vector<float> logits(static_cast<size_t>(n_expert * m));
    for (size_t i = 0; i < logits.size(); ++i)
      logits[i] = static_cast<float>((i * 7919) % 5);  // many exact ties
    const auto ref = testing::ref_top_k(static_cast<uint32_t>(gating), logits, n_expert, k);
    for (ops::ShaderVariant v : ops::top_k_variants(*fx.device)) {
      INFO(ops::shader_variant_name(v));
      const Out out = run(fx, gating, logits, n_expert, k, v);
      REQUIRE(out.ids == ref.ids);
    }
  }
  // sigmoid keeps a NaN logit to its own expert: it must never be chosen while numbers remain.
  std::vector<float> logits = testing::random_f32(40, 9);
  logits[3] = std::numeric_limits<float>::quiet_NaN();
  logits[3 + 20] = std::numeric_limits<float>::quiet_NaN();
  for (ops::ShaderVariant v : ops::top_k_variants(*fx.device)) {
    INFO(ops::shader_variant_name(v));
    const Out out = run(fx, ExpertGating::sigmoid, logits, 20, 19, v);
    for (int32_t id : out.ids) REQUIRE(id != 3);
  }

  Buffer b = make(fx, nullptr, 1 << 14, "any");
  REQUIRE(fx.rec->begin().ok());
  const BufferSlice s = b.slice();
  CHECK(ops::top_k(*fx.rec, ExpertGating::none, s, 8, 1, 2, s, s).code() ==
        ErrorCode::invalid_argument);
  CHECK(ops::top_k(*fx.rec, ExpertGating::sigmoid, s, 1025, 1, 2, s, s).code() ==
        ErrorCode::invalid_argument);
  CHECK(ops::top_k(*fx.rec, ExpertGating::sigmoid, s, 8, 1, 9, s, s).code() ==
        ErrorCode::invalid_argument);
  CHECK(ops::top_k(*fx.rec, ExpertGating::softmax, s, 8, 1000, 2, s, s).code() ==
        ErrorCode::invalid_argument);
  REQUIRE(fx.rec->submit_and_wait().ok());
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
