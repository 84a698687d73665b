// The hybrid executor (issue 7 item 1) on the tiny preset models against the plain CPU Forward,
// on whatever Vulkan device the tests get (lavapipe in CI, with the validation layer: every
// case requires zero validation messages), for several placement plans.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include "gpu/testing/vulkan_fixture.h"
#include "planner/plan.h"
#include "runtime/executor_test_support.h"
#include "runtime/forward_test_support.h"
#include "runtime/hybrid_executor.h"
#include "runtime/kv_cache.h"
#include "support/test_support.h"

namespace tandem {
namespace {

using testing::argmax;
using testing::EvalFn;
using testing::greedy;
using testing::Run;
using testing::test_device;

const bool k_probe = test::register_probe("vulkan", gpu::testing::vulkan_probe);

constexpr uint32_t k_n_ctx = 128;

// Counts how often the router picks each (layer, expert): the "profile" of the hot-half plan.
struct RoutingCounter final : ForwardObserver {
  uint32_t n_expert = 0;
  std::vector<uint64_t> n;
  void on_routing(uint32_t layer, std::span<const int32_t>, std::span<const int32_t> ids,
                  std::span<const float>) override {
    for (int32_t e : ids) ++n[size_t(layer) * n_expert + size_t(e)];
  }
};

// Each position's chosen expert set per layer (sorted: routing is a set, not an order).
struct RoutingLog final : ForwardObserver {
  uint32_t n_layer = 0;
  ForwardObserver* next = nullptr;
  struct Choice {
    std::vector<int32_t> ids;  // best first
    std::vector<float> weights;
    std::vector<int32_t> set() const {
      std::vector<int32_t> s = ids;
      std::sort(s.begin(), s.end());
      return s;
    }
  };
  std::map<std::pair<int32_t, uint32_t>, Choice> choices;  // (position, layer)
  void on_routing(uint32_t layer, std::span<const int32_t> positions, std::span<const int32_t> ids,
                  std::span<const float> weights) override {
    const size_t k = ids.size() / positions.size();
    for (size_t i = 0; i < positions.size(); ++i) {
      Choice& c = choices[{positions[i], layer}];
      c.ids.assign(ids.begin() + static_cast<ptrdiff_t>(i * k), ids.begin() + static_cast<ptrdiff_t>((i + 1) * k));
      c.weights.assign(weights.begin() + static_cast<ptrdiff_t>(i * k),
                       weights.begin() + static_cast<ptrdiff_t>((i + 1) * k));
    }
    if (next != nullptr) next->on_routing(layer, positions, ids, weights);
  }
  // Positions where some layer chose a different set of experts than in `reference`. Each
  // such choice must be a near tie: the same experts but the last-ranked one, whose weight
  // is within 0.01 of the reference's last-ranked weight (the two were nearly tied there).
  std::set<int32_t> differences(const RoutingLog& reference) const {
    std::set<int32_t> out;
    for (const auto& [key, c] : choices) {
      auto it = reference.choices.find(key);
      REQUIRE(it != reference.choices.end());
      const Choice& r = it->second;
      if (c.set() == r.set()) continue;
      out.insert(key.first);
      const size_t k = c.ids.size();
      INFO(fmt::format("position {} layer {}: experts {} weights {} vs reference {} weights {}", key.first,
                       key.second, fmt::join(c.ids, ","), fmt::join(c.weights, ","), fmt::join(r.ids, ","),
                       fmt::join(r.weights, ",")));
      CHECK(std::equal(c.ids.begin(), c.ids.end() - 1, r.ids.begin()));
      CHECK(std::abs(c.weights[k - 1] - r.weights[k - 1]) < 0.01f);
    }
    return out;
  }
};

// NMSE over the logits rows (n_vocab each) whose position is not in `skip`; row r of `a` and
// `b` is position p0 + r.
double nmse_except(const std::vector<float>& a, const std::vector<float>& b, size_t nv, int32_t p0,
                   const std::set<int32_t>& skip) {
  std::vector<float> ka, kb;
  for (size_t r = 0; r * nv < a.size(); ++r) {
    if (skip.count(p0 + static_cast<int32_t>(r)) != 0) continue;
    ka.insert(ka.end(), a.begin() + static_cast<ptrdiff_t>(r * nv), a.begin() + static_cast<ptrdiff_t>((r + 1) * nv));
    kb.insert(kb.end(), b.begin() + static_cast<ptrdiff_t>(r * nv), b.begin() + static_cast<ptrdiff_t>((r + 1) * nv));
  }
  return test::nmse(ka, kb);
}

Run cpu_greedy(const Model& model, std::span<const int32_t> prompt, int n_gen, uint32_t n_ubatch,
               ForwardObserver* counter = nullptr) {
  ForwardOptions fo;
  fo.n_ubatch = n_ubatch;
  auto fwd = Forward::create(model.shape(), model.weights(), fo, make_cpu_ops());
  REQUIRE(fwd.ok());
  (*fwd)->set_observer(counter);
  KvCacheOptions ko;
  ko.n_ctx = k_n_ctx;
  ko.n_ubatch = n_ubatch;
  auto kv = KvCache::create(model.shape(), ko);
  REQUIRE(kv.ok());
  return greedy([&](std::span<const int32_t> t, LogitsRows rows,
                    std::vector<float>& out) { return (*fwd)->eval(*kv, t, rows, out); },
                prompt, n_gen);
}

Plan make_test_plan(const ModelShape& sh, const std::function<ExpertTier(uint32_t, uint32_t)>& tier,
                    uint32_t ram_cache_experts, uint32_t n_dynamic_slots = 0) {
  Plan p;
  p.model_name = "tiny";
  p.n_layer = sh.n_layer;
  p.n_expert = sh.n_expert;
  p.placement.attention = Device::gpu;
  p.placement.output_head = Device::gpu;
  p.placement.ram_cache_experts = ram_cache_experts;
  p.placement.n_dynamic_slots = n_dynamic_slots;
  p.placement.tiers.assign(sh.n_layer, std::vector<ExpertTier>(sh.n_expert, ExpertTier::ram_cpu));
  for (uint32_t l = 0; l < sh.n_layer; ++l) {
    for (uint32_t e = 0; e < sh.n_expert; ++e) p.placement.tiers[l][e] = tier(l, e);
  }
  return p;
}

std::unique_ptr<HybridExecutor> make_hybrid(const Model& model, uint32_t n_ubatch, const Plan* plan,
                                            CachePolicyKind policy = CachePolicyKind::lru) {
  HybridExecutorOptions o;
  o.device = test_device();
  o.n_ctx = k_n_ctx;
  o.n_ubatch = n_ubatch;
  o.n_threads = 2;
  o.plan = plan;
  o.policy = policy;
  auto ex = HybridExecutor::create(model, o);
  INFO(ex.status().message());
  REQUIRE(ex.ok());
  gpu::testing::pin_software_icd();
  return std::move(ex).value();
}

Model load_tiny(const test::TempDir& dir, DType dtype, bool transposed, bool swa, const char* name) {
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.dtype = dtype;
  mo.transpose_down = transposed;
  mo.swa = swa;
  if (swa) mo.n_layer = 5;  // NoPE layers need n_layer > 4 (spec §2.4)
  auto m = testing::make_and_load(mo, dir / name);
  INFO(m.status().message());
  REQUIRE(m.ok());
  return std::move(m).value();
}

// The gpu_executor_test rule: q8_0/q4_0 logits differ from the plain CPU path's by the CPU's
// q8_0 quantization of activations, which the shaders do not do (the GPU's attention and
// experts), so a step whose CPU top-2 logits are closer than 4x the measured rms error may
// flip; such near ties are allowed (at most 2) and any other difference fails.
std::unique_ptr<HybridExecutor> make_discrete_hybrid(const Model& model, uint32_t n_ubatch, const Plan* plan) {
  const char* old = std::getenv("TANDEM_VK_FORCE_DISCRETE");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TANDEM_VK_FORCE_DISCRETE", "1", 1);
  auto ex = make_hybrid(model, n_ubatch, plan);
  if (old != nullptr) {
    ::setenv("TANDEM_VK_FORCE_DISCRETE", saved.c_str(), 1);
  } else {
    ::unsetenv("TANDEM_VK_FORCE_DISCRETE");
  }
  return ex;
}

int near_ties(const Run& cpu, const Run& hyb, size_t n_prompt, size_t nv) {
  int ties = 0;
  for (size_t i = 0; i < hyb.generated.size(); ++i) {
    if (hyb.generated[i] == cpu.generated[i]) continue;
    const auto pick = [&](const Run& r) {
      return i == 0 ? std::span<const float>(r.prompt_logits).subspan((n_prompt - 1) * nv, nv)
                    : std::span<const float>(r.decode_logits).subspan((i - 1) * nv, nv);
    };
    const auto cl = pick(cpu), hl = pick(hyb);
    double err = 0;
    for (size_t j = 0; j < nv; ++j) err += (hl[j] - cl[j]) * (hl[j] - cl[j]);
    const double rms_err = std::sqrt(err / static_cast<double>(nv));
    const double gap = cl[static_cast<size_t>(cpu.generated[i])] - cl[static_cast<size_t>(hyb.generated[i])];
    INFO(fmt::format("step {}: CPU {} hybrid {}, CPU logit gap {:.3e}, rms error {:.3e}", i, cpu.generated[i],
                     hyb.generated[i], gap, rms_err));
    CHECK(gap <= 4 * rms_err);
    ++ties;
  }
  return ties;
}

// Every expert's tier by its id mod 4: pinned, dynamic, RAM, storage (2 dynamic experts per layer
// of the tiny model's 8, for `n_slots` dynamic slots and a one-slot RAM cache).
Plan four_tier_plan(const ModelShape& sh, uint32_t n_slots) {
  return make_test_plan(sh, [](uint32_t, uint32_t e) {
    const ExpertTier t[] = {ExpertTier::gpu_pinned, ExpertTier::gpu_dynamic, ExpertTier::ram_cpu, ExpertTier::storage};
    return t[e % 4];
  }, 1, n_slots);
}

struct PlanCase {
  std::string name;
  Plan plan;
  CachePolicyKind policy = CachePolicyKind::lru;
};

// The plan's hybrid run against the CPU run `cpu` (made with `cpu_routing` observing): teacher
// forced logits within the bound, free-running greedy tokens equal up to near ties, counters
// consistent with the plan's tiers.
void compare_with_cpu(const Model& model, std::span<const int32_t> prompt, int k_gen, uint32_t k_ubatch,
                      const Run& cpu, const RoutingLog& cpu_routing, const PlanCase& pc) {
  const ModelShape& sh = model.shape();
  const std::string& name = pc.name;
  auto ex = make_hybrid(model, k_ubatch, &pc.plan, pc.policy);
  RoutingLog hyb_routing;
  ex->set_observer(&hyb_routing);
  const Run forced = greedy([&](std::span<const int32_t> t, LogitsRows rows,
                                std::vector<float>& out) { return ex->eval(t, rows, out); },
                            prompt, k_gen, &cpu.generated);
  ex->set_observer(nullptr);
  // The activations' rounding differs (see near_ties), so a router whose k-th and (k+1)-th
  // experts are nearly tied may choose differently for one position, which moves that
  // position's logits by far more than rounding (measured: NMSE ~2e-2 at 2 of 64 steps, for the
  // GPU executor too). Such positions are counted (a few are allowed) and left out of the NMSE;
  // every other position must meet the bound.
  const std::set<int32_t> flips = hyb_routing.differences(cpu_routing);
  const int32_t n_prompt = static_cast<int32_t>(prompt.size());
  const double prompt_nmse = nmse_except(forced.prompt_logits, cpu.prompt_logits, sh.n_vocab, 0, flips);
  // decode_logits row i is the logits of the token at position n_prompt + i.
  const double decode_nmse = nmse_except(forced.decode_logits, cpu.decode_logits, sh.n_vocab, n_prompt, flips);
  INFO(fmt::format("{}: prompt NMSE {:.2e}, decode NMSE {:.2e}, routing flips at {} positions", name, prompt_nmse,
                   decode_nmse, flips.size()));
  CHECK(hyb_routing.choices.size() == cpu_routing.choices.size());
  CHECK(flips.size() <= 8);  // of 71 positions x n_layer choices
  CHECK(prompt_nmse < 1e-3);  // the q8_0/q4_0 bound of gpu_executor_test
  CHECK(decode_nmse < 1e-3);
  const int ties = near_ties(cpu, forced, prompt.size(), sh.n_vocab);
  CHECK(ties <= 2);

  // Free-running greedy, with the counters of exactly this run, and its routing counted by tier.
  ex->clear();
  ex->reset_counters();
  struct TierPairs final : ForwardObserver {
    const Plan* plan = nullptr;
    uint64_t by_tier[4] = {0, 0, 0, 0};
    void on_routing(uint32_t layer, std::span<const int32_t>, std::span<const int32_t> ids,
                    std::span<const float>) override {
      for (int32_t e : ids) ++by_tier[static_cast<int>(plan->placement.tiers[layer][size_t(e)])];
    }
  } tier_pairs;
  tier_pairs.plan = &pc.plan;
  ex->set_observer(&tier_pairs);
  const Run free_run = greedy([&](std::span<const int32_t> t, LogitsRows rows,
                                  std::vector<float>& out) { return ex->eval(t, rows, out); },
                              prompt, k_gen);
  ex->set_observer(nullptr);
  if (ties == 0) CHECK(free_run.generated == cpu.generated);
  const ExecutorCounters cn = ex->counters();
  const GpuSlotStats ss = ex->gpu_slot_stats();
  const uint64_t n_ubatches = (prompt.size() + k_ubatch - 1) / k_ubatch + uint64_t(k_gen);
  CHECK(cn.tokens == prompt.size() + uint64_t(k_gen));
  CHECK(cn.syncs <= n_ubatches * (sh.n_layer + 1));  // one round trip per layer + the head
  CHECK(cn.syncs >= n_ubatches * sh.n_layer);
  // Routed (row, slot) pairs: every row wants logits (LogitsRows::all, then one-token steps),
  // so every layer routes every row.
  const uint64_t pairs = uint64_t(sh.n_layer) * (prompt.size() + uint64_t(k_gen)) * sh.n_expert_used;
  const uint64_t pinned_pairs = tier_pairs.by_tier[int(ExpertTier::gpu_pinned)];
  const uint64_t dynamic_pairs = tier_pairs.by_tier[int(ExpertTier::gpu_dynamic)];
  CHECK(pinned_pairs + dynamic_pairs + tier_pairs.by_tier[int(ExpertTier::ram_cpu)] +
            tier_pairs.by_tier[int(ExpertTier::storage)] == pairs);
  uint32_t n_pinned = 0, n_dynamic = 0, n_storage = 0;
  std::vector<uint32_t> dynamic_per_layer;
  for (const auto& layer : pc.plan.placement.tiers) {
    dynamic_per_layer.push_back(0);
    for (ExpertTier t : layer) {
      n_pinned += t == ExpertTier::gpu_pinned ? 1 : 0;
      n_dynamic += t == ExpertTier::gpu_dynamic ? 1 : 0;
      dynamic_per_layer.back() += t == ExpertTier::gpu_dynamic ? 1 : 0;
      n_storage += t == ExpertTier::storage ? 1 : 0;
    }
  }
  uint32_t n_slots = 0;
  for (uint32_t d : dynamic_per_layer) n_slots += std::min(d, pc.plan.placement.n_dynamic_slots);
  CHECK(ex->gpu_slot_count() == n_slots);
  CHECK(ex->gpu_expert_count() >= n_pinned);
  CHECK(ex->gpu_expert_count() <= n_pinned + n_slots);
  // Every pair of a GPU-tier expert is a hit or a dynamic miss; pinned ones always hit.
  CHECK(cn.gpu_hits + cn.gpu_misses == pinned_pairs + dynamic_pairs);
  CHECK(cn.gpu_hits >= pinned_pairs);
  CHECK(ss.hits + ss.misses == dynamic_pairs);
  CHECK(ss.misses == cn.gpu_misses);
  CHECK(ss.misses == ss.uploads + ss.spills);
  if (n_dynamic == 0) CHECK(cn.gpu_misses == 0);
  if (n_slots > 0 && n_slots < n_dynamic && dynamic_pairs > 0) {
    // Fewer slots than dynamic experts: experts come and go.
    CHECK(cn.gpu_misses > 0);
    CHECK(ss.uploads > 0);
    CHECK(ss.evictions > 0);
    uint64_t min_expert = UINT64_MAX;
    for (const auto& L : model.weights().layers) {
      min_expert = std::min(min_expert, L.ffn_gate_exps.nb[2] + L.ffn_up_exps.nb[2] + L.ffn_down_exps.nb[2]);
    }
    CHECK(cn.upload_bytes >= ss.uploads * min_expert);
  }
  if (n_pinned == sh.n_layer * sh.n_expert) CHECK(cn.gpu_hits == pairs);
  if (n_pinned + n_dynamic == 0) CHECK(cn.gpu_hits == 0);
  if (n_storage > 0) {
    CHECK(cn.storage_bytes > 0);
    CHECK(cn.ram_misses > 0);
  } else {
    CHECK(cn.storage_bytes == 0);
  }
  // One decode token: at most one round trip per layer, plus the output head.
  ex->reset_counters();
  std::vector<float> logits;
  const int32_t tok[] = {free_run.generated.back()};
  REQUIRE(ex->eval(tok, LogitsRows::last, logits).ok());
  CHECK(ex->counters().syncs <= sh.n_layer + 1);
  CHECK(ex->memory_lines().size() == 2);
  CHECK(ex->validation_message_count() == 0);
  WARN(fmt::format("{}: prompt NMSE {:.2e}, decode NMSE {:.2e}, routing flips {}, near-tie token flips {}, "
                   "GPU pairs {} hits + {} misses of {} (dynamic: {} uploads, {} on the CPU), storage bytes {}, "
                   "syncs {} for {} ubatches",
                   name, prompt_nmse, decode_nmse, flips.size(), ties, cn.gpu_hits, cn.gpu_misses, pairs, ss.uploads,
                   ss.spills, cn.storage_bytes, cn.syncs, n_ubatches));
}

}  // namespace

TEST_CASE("hybrid executor: greedy 64 tokens equal the CPU path's for several plans", "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  constexpr int k_gen = 64;
  constexpr uint32_t k_ubatch = 3;
  const auto prompt = testing::random_tokens(7, 512, 5);  // ubatches of 3, 3, 1 rows
  struct Config {
    DType dtype;
    bool transposed;
    bool swa;
  };
  for (const Config c : {Config{DType::q4_0, false, false}, Config{DType::q8_0, true, true}}) {
    const std::string model_name =
        fmt::format("{}_{}_{}.gguf", dtype_name(c.dtype), c.transposed ? "t" : "s", c.swa);
    const Model model = load_tiny(dir, c.dtype, c.transposed, c.swa, model_name.c_str());
    const ModelShape& sh = model.shape();
    RoutingCounter counter;
    counter.n_expert = sh.n_expert;
    counter.n.assign(size_t(sh.n_layer) * sh.n_expert, 0);
    RoutingLog cpu_routing;
    cpu_routing.next = &counter;
    const Run cpu = cpu_greedy(model, prompt, k_gen, k_ubatch, &cpu_routing);

    // Hot half: per layer the n_expert/2 experts the CPU run routed to most (ties: lower id).
    std::vector<std::vector<bool>> hot(sh.n_layer, std::vector<bool>(sh.n_expert, false));
    for (uint32_t l = 0; l < sh.n_layer; ++l) {
      std::vector<uint32_t> order(sh.n_expert);
      for (uint32_t e = 0; e < sh.n_expert; ++e) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        return counter.n[size_t(l) * sh.n_expert + a] > counter.n[size_t(l) * sh.n_expert + b];
      });
      for (uint32_t i = 0; i < sh.n_expert / 2; ++i) hot[l][order[i]] = true;
    }
    std::vector<PlanCase> plans;
    if (c.dtype == DType::q4_0) {
      plans.push_back({"all on the GPU", make_test_plan(sh, [](uint32_t, uint32_t) { return ExpertTier::gpu_pinned; }, 0)});
      plans.push_back({"none on the GPU", make_test_plan(sh, [](uint32_t, uint32_t) { return ExpertTier::ram_cpu; }, 0)});
      plans.push_back({"hot half on the GPU", make_test_plan(sh, [&](uint32_t l, uint32_t e) {
                         return hot[l][e] ? ExpertTier::gpu_pinned : ExpertTier::ram_cpu;
                       }, 0)});
      // Every expert dynamic, 2 slots per layer: decode steps fit (k = 2), a 3-row prompt
      // ubatch's pairs may not (then some run on the CPU).
      plans.push_back({"all dynamic, 2 GPU slots", make_test_plan(sh, [](uint32_t, uint32_t) {
                         return ExpertTier::gpu_dynamic;
                       }, 0, 2)});
      plans.push_back({"hot half pinned, the rest dynamic in 1 GPU slot (frequency)",
                       make_test_plan(sh, [&](uint32_t l, uint32_t e) {
                         return hot[l][e] ? ExpertTier::gpu_pinned : ExpertTier::gpu_dynamic;
                       }, 0, 1),
                       CachePolicyKind::frequency});
    }
    // Every expert alternates tiers (GPU, RAM, storage through a one-slot-per-layer cache).
    plans.push_back({"alternating tiers, tiny cache", make_test_plan(sh, [](uint32_t l, uint32_t e) {
                       const ExpertTier t[] = {ExpertTier::gpu_pinned, ExpertTier::ram_cpu, ExpertTier::storage};
                       return t[(l + e) % 3];
                     }, 1)});
    plans.push_back({"four tiers by expert id mod 4, 1 GPU slot", four_tier_plan(sh, 1)});

    for (const PlanCase& pc : plans) {
      const std::string name = fmt::format("{}: {}", model_name, pc.name);
      DYNAMIC_SECTION(name) {
        PlanCase named = pc;
        named.name = name;
        compare_with_cpu(model, prompt, k_gen, k_ubatch, cpu, cpu_routing, named);
      }
    }
  }
}

TEST_CASE("hybrid executor: each layer's routing reaches the observer before its attention is submitted",
          "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  const Model model = load_tiny(dir, DType::q4_0, false, false, "order.gguf");
  const ModelShape& sh = model.shape();
  auto ex = make_hybrid(model, 4, nullptr);  // the no-plan rule: the tiny model fits on the GPU
  CHECK(ex->gpu_expert_count() == sh.n_layer * sh.n_expert);

  struct Log final : ForwardObserver {
    std::vector<std::string> events;
    void on_routing(uint32_t layer, std::span<const int32_t>, std::span<const int32_t>,
                    std::span<const float>) override {
      events.push_back(fmt::format("route {}", layer));
    }
  } log;
  ex->set_observer(&log);
  ex->set_attention_submit_hook([&](uint32_t layer) { log.events.push_back(fmt::format("attention {}", layer)); });
  std::vector<float> logits;
  const auto prompt = testing::random_tokens(6, 512, 9);  // ubatches of 4 and 2 rows
  REQUIRE(ex->eval(prompt, LogitsRows::last, logits).ok());
  const int32_t tok[] = {argmax(logits)};
  REQUIRE(ex->eval(tok, LogitsRows::last, logits).ok());
  std::vector<std::string> expected;
  for (int pass = 0; pass < 3; ++pass) {
    for (uint32_t l = 0; l < sh.n_layer; ++l) {
      // The first ubatch gives no logits: its last layer only stores K/V and routes nothing.
      if (pass > 0 || l + 1 < sh.n_layer) expected.push_back(fmt::format("route {}", l));
      expected.push_back(fmt::format("attention {}", l));
    }
  }
  CHECK(log.events == expected);
  CHECK(ex->validation_message_count() == 0);
}

TEST_CASE("hybrid executor: a dynamic expert's upload is issued after its layer's routing, before its attention",
          "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  const Model model = load_tiny(dir, DType::q4_0, false, false, "upload_order.gguf");
  const ModelShape& sh = model.shape();
  const Plan plan = make_test_plan(sh, [](uint32_t, uint32_t) { return ExpertTier::gpu_dynamic; }, 0, 2);
  auto ex = make_hybrid(model, 4, &plan);
  CHECK(ex->gpu_slot_count() == sh.n_layer * 2);
  CHECK(ex->gpu_expert_count() == 0);  // slots start empty

  struct Log final : ForwardObserver {
    std::vector<std::pair<std::string, uint32_t>> events;  // (what, layer)
    void on_routing(uint32_t layer, std::span<const int32_t>, std::span<const int32_t>,
                    std::span<const float>) override {
      events.emplace_back("route", layer);
    }
  } log;
  uint64_t hook_bytes = 0;
  ex->set_observer(&log);
  ex->set_attention_submit_hook([&](uint32_t layer) { log.events.emplace_back("attention", layer); });
  ex->set_upload_hook([&](uint32_t layer, int32_t expert, uint64_t bytes) {
    CHECK((expert >= 0 && uint32_t(expert) < sh.n_expert));
    hook_bytes += bytes;
    log.events.emplace_back("upload", layer);
  });
  std::vector<float> logits;
  REQUIRE(ex->eval(testing::random_tokens(6, 512, 9), LogitsRows::last, logits).ok());
  for (int i = 0; i < 4; ++i) {
    const int32_t tok[] = {argmax(logits)};
    REQUIRE(ex->eval(tok, LogitsRows::last, logits).ok());
  }
  // Each upload sits between its layer's routing and that layer's attention submission.
  uint64_t n_uploads = 0;
  std::string last_what;
  uint32_t last_layer = 0;
  for (const auto& [what, layer] : log.events) {
    if (what == "upload") {
      ++n_uploads;
      INFO(fmt::format("upload for layer {} after {} {}", layer, last_what, last_layer));
      CHECK(((last_what == "route" || last_what == "upload") && last_layer == layer));
    }
    last_what = what;
    last_layer = layer;
  }
  const GpuSlotStats ss = ex->gpu_slot_stats();
  CHECK(n_uploads == ss.uploads);
  CHECK(n_uploads >= sh.n_layer);  // every layer starts empty
  CHECK(ex->counters().gpu_misses == ss.misses);
  CHECK(hook_bytes > 0);
  CHECK(ex->counters().upload_bytes >= hook_bytes);
  CHECK(ex->gpu_expert_count() <= sh.n_layer * 2);
  CHECK(ex->gpu_expert_count() >= sh.n_layer);
  CHECK(ex->validation_message_count() == 0);
}

TEST_CASE("hybrid executor: the forced discrete path (staged experts) gives the unified path's tokens",
          "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  const Model model = load_tiny(dir, DType::q4_0, true, false, "discrete.gguf");
  const ModelShape& sh = model.shape();
  const Plan plan = make_test_plan(sh, [](uint32_t l, uint32_t e) {
    return (l + e) % 2 == 0 ? ExpertTier::gpu_pinned : ExpertTier::ram_cpu;
  }, 0);
  const auto prompt = testing::random_tokens(5, 512, 3);
  auto run = [&](HybridExecutor& ex) {
    return greedy([&](std::span<const int32_t> t, LogitsRows rows,
                      std::vector<float>& out) { return ex.eval(t, rows, out); },
                  prompt, 16);
  };
  auto unified = make_hybrid(model, 4, &plan);
  const Run u = run(*unified);
  std::unique_ptr<HybridExecutor> discrete = make_discrete_hybrid(model, 4, &plan);
  CHECK(discrete->gpu_expert_count() == sh.n_layer * sh.n_expert / 2);
  // Half of every layer's experts were staged, on top of the dense weights.
  uint64_t half = 0;
  for (const auto& L : model.weights().layers) {
    half += (L.ffn_gate_exps.nbytes() + L.ffn_up_exps.nbytes() + L.ffn_down_exps.nbytes()) / 2;
  }
  CHECK(discrete->counters().upload_bytes >= half);
  const Run d = run(*discrete);
  CHECK(d.generated == u.generated);
  CHECK(test::nmse(d.decode_logits, u.decode_logits) < 1e-10);
  CHECK_THAT(discrete->memory_lines()[0].detail, Catch::Contains("device-local, staged once"));
  CHECK(discrete->validation_message_count() == 0);
  CHECK(unified->validation_message_count() == 0);
}

TEST_CASE("hybrid executor: dynamic slots uploaded through the staging ring (forced discrete) match memcpy ones",
          "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  const Model model = load_tiny(dir, DType::q4_0, false, false, "discrete_dynamic.gguf");
  const ModelShape& sh = model.shape();
  const Plan plan = four_tier_plan(sh, 1);
  const auto prompt = testing::random_tokens(7, 512, 4);
  auto run = [&](HybridExecutor& ex) {
    return greedy([&](std::span<const int32_t> t, LogitsRows rows,
                      std::vector<float>& out) { return ex.eval(t, rows, out); },
                  prompt, 24);
  };
  auto unified = make_hybrid(model, 3, &plan);
  const Run u = run(*unified);
  auto discrete = make_discrete_hybrid(model, 3, &plan);
  const Run d = run(*discrete);
  CHECK(d.generated == u.generated);
  CHECK(test::nmse(d.prompt_logits, u.prompt_logits) < 1e-10);
  CHECK(test::nmse(d.decode_logits, u.decode_logits) < 1e-10);
  // The same routing gives the same slot decisions on both paths.
  const GpuSlotStats su = unified->gpu_slot_stats(), sd = discrete->gpu_slot_stats();
  CHECK(sd.uploads == su.uploads);
  CHECK(sd.hits == su.hits);
  CHECK(sd.spills == su.spills);
  CHECK(sd.uploads > 0);
  CHECK(sd.evictions > 0);  // 2 dynamic experts per layer, 1 slot
  CHECK_THAT(discrete->memory_lines()[0].detail, Catch::Contains("uploaded through a staging ring"));
  CHECK_THAT(unified->memory_lines()[0].detail, Catch::Contains("filled by memcpy"));
  CHECK(discrete->validation_message_count() == 0);
  CHECK(unified->validation_message_count() == 0);
}

TEST_CASE("hybrid executor: --trace writes the CPU side's spans and the GPU waits", "[gpu][hybrid]") {
  test::TempDir dir("tandem-hybrid");
  const Model model = load_tiny(dir, DType::q4_0, false, false, "trace.gguf");
  const Plan plan = make_test_plan(model.shape(), [](uint32_t l, uint32_t e) {
    const ExpertTier t[] = {ExpertTier::gpu_pinned, ExpertTier::storage, ExpertTier::gpu_dynamic};
    return t[(l + e) % 3];
  }, 2, 1);
  const auto path = dir / "trace.json";
  {
    HybridExecutorOptions o;
    o.device = test_device();
    o.n_ctx = 32;
    o.n_ubatch = 4;
    o.n_threads = 2;
    o.plan = &plan;
    o.trace = path;
    auto ex = HybridExecutor::create(model, o);
    INFO(ex.status().message());
    REQUIRE(ex.ok());
    std::vector<float> logits;
    REQUIRE((*ex)->eval(testing::random_tokens(6, 512, 2), LogitsRows::last, logits).ok());
    CHECK((*ex)->counters().storage_bytes > 0);
    CHECK((*ex)->gpu_slot_stats().uploads > 0);
  }
  std::ifstream in(path);
  REQUIRE(in.good());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* name : {"\"gpu_wait\"", "\"read\"", "\"router\"", "\"experts\"", "\"gpu_upload\""}) {
    INFO(name);
    CHECK(text.find(name) != std::string::npos);
  }
}

}  // namespace tandem
