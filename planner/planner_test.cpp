#include "planner/planner.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <random>

#include "planner/test_fixtures.h"

using namespace tandem;
using namespace tandem::planner_test;

namespace {

struct Instance {
  ModelShape shape;
  Profile profile;
  HardwareProfile hw;
  Budget budget;
};

uint64_t expert_bytes_of(const ModelShape& s) { return 3ull * s.n_ff_exp * dtype_row_size(DType::q4_0, s.n_embd); }

// Fixed (non-expert) RAM with attention and head on the CPU, from the cost model.
uint64_t fixed_ram(const Instance& in) {
  auto cm = CostModel::create(in.shape, in.profile, in.hw, CostOptions{});
  uint64_t g = 0, r = 0;
  cm->fixed_memory(Device::cpu, Device::cpu, g, r);
  return r;
}

Instance random_instance(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> n_layer_d(1, 3), n_expert_d(2, 4);
  const uint32_t n_layer = n_layer_d(rng), n_expert = n_expert_d(rng);
  std::uniform_int_distribution<uint32_t> k_d(1, n_expert - 1);
  Instance in;
  in.shape = tiny_shape(n_layer, n_expert, k_d(rng));
  in.profile = random_profile(in.shape, seed, 120);
  in.hw = random_machine(seed * 31 + 7);
  const uint64_t B = expert_bytes_of(in.shape);
  const uint64_t n = uint64_t{n_layer} * n_expert;
  std::uniform_int_distribution<uint64_t> ram_d(n_layer, n + n_layer), gpu_d(0, n + 2);
  in.budget.ram = fixed_ram(in) + ram_d(rng) * B + (rng() % 2) * (B / 2);
  // On a unified machine, GPU allocations count in RAM too: leave room for them.
  if (!in.hw.gpus.empty() && in.hw.gpus[0].unified_memory) in.budget.ram += gpu_d(rng) * B;
  in.budget.gpu_mem = gpu_d(rng) * B + (rng() % 3 == 0 ? 4ull << 20 : 0);
  return in;
}

Plan plan_with(const Instance& in, PlanSolver solver) {
  PlanOptions o;
  o.solver = solver;
  auto p = make_plan(in.shape, in.profile, in.hw, in.budget, o);
  REQUIRE(p.ok());
  return std::move(p).value();
}

void require_within_budget(const Instance& in, const Plan& p) {
  const uint64_t gpu_cap = in.hw.gpus.empty() ? 0 : std::min(in.budget.gpu_mem, in.hw.gpus[0].memory_bytes);
  REQUIRE(p.predicted.memory.gpu_bytes <= gpu_cap);
  REQUIRE(p.predicted.memory.ram_bytes <= std::min(in.budget.ram, in.hw.ram_bytes));
}

size_t count_gpu_experts(const Plan& p) {
  size_t n = 0;
  for (const auto& l : p.placement.tiers) {
    for (ExpertTier t : l) n += runs_on_gpu(t);
  }
  return n;
}

}  // namespace

// The heuristic is not exact (planner.h names the failure mode: a per-layer sync cost that
// makes it better to concentrate GPU work in fewer layers, which no single move or
// single-expert cross-layer swap reaches). Documented bound, measured on these 150 seeded
// instances: equal to the optimum on >= 90% of them, never more than 30% slower (worst seen
// 1.27, seed 89), and within 2% on average.
TEST_CASE("planner: heuristic matches the brute-force optimum on small random instances", "[planner][property]") {
  int n = 0, equal = 0;
  double worst = 1.0, sum = 0;
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    const Instance in = random_instance(seed);
    PlanOptions o;
    auto exact = make_plan(in.shape, in.profile, in.hw, in.budget, PlanOptions{o.cost, PlanSolver::exact, 12});
    auto heur = make_plan(in.shape, in.profile, in.hw, in.budget, PlanOptions{o.cost, PlanSolver::heuristic, 12});
    REQUIRE(exact.ok() == heur.ok());
    if (!exact.ok()) continue;
    ++n;
    require_within_budget(in, *exact);
    require_within_budget(in, *heur);
    const double ratio = heur->predicted.token_us / exact->predicted.token_us;
    INFO("seed " << seed << " exact " << exact->predicted.token_us << " heuristic " << heur->predicted.token_us);
    REQUIRE(ratio >= 1.0 - 1e-9);  // nothing beats the optimum
    sum += ratio;
    if (ratio <= 1.0 + 1e-9) ++equal;
    worst = std::max(worst, ratio);
  }
  std::printf("heuristic vs exact: %d of %d instances equal, worst ratio %.4f, mean ratio %.4f\n", equal, n,
              worst, sum / n);
  REQUIRE(n >= 100);
  CHECK(equal >= n * 9 / 10);
  CHECK(worst <= 1.30);
  CHECK(sum / n <= 1.02);
}

TEST_CASE("planner: more GPU memory is never slower", "[planner]") {
  for (uint64_t seed = 200; seed < 215; ++seed) {
    Instance in = random_instance(seed);
    if (in.hw.gpus.empty()) in.hw.gpus.push_back(test_machine(false).gpus[0]);
    const uint64_t B = expert_bytes_of(in.shape);
    double prev = 1e300;
    size_t prev_gpu = 0;
    for (uint64_t slots = 0; slots <= uint64_t{in.shape.n_layer} * in.shape.n_expert + 2; ++slots) {
      in.budget.gpu_mem = slots * B;
      const Plan p = plan_with(in, PlanSolver::automatic);
      INFO("seed " << seed << " gpu budget " << slots << " experts");
      require_within_budget(in, p);
      REQUIRE(p.predicted.token_us <= prev * (1 + 1e-12));
      prev = p.predicted.token_us;
      prev_gpu = count_gpu_experts(p);
    }
    (void)prev_gpu;
  }
}

TEST_CASE("planner: 21B shape (52 x 64 experts) is planned quickly", "[planner][speed]") {
  const ModelShape shape = shape_21b();
  const Profile profile = random_profile(shape, 5, 64);
  for (bool unified : {false, true}) {
    const HardwareProfile hw = test_machine(unified);
    Budget budget;
    budget.gpu_mem = unified ? (3ull << 30) : (6ull << 30);
    budget.ram = 8ull << 30;
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    auto plan = make_plan(shape, profile, hw, budget, PlanOptions{});
    const double cpu_s = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(plan.ok());
    std::printf("21B plan on %s: %.3f s wall, %.3f s CPU (heuristic); %.2f tokens/s predicted, %zu experts on GPU\n",
                hw.name.c_str(), s, cpu_s, plan->predicted.tokens_per_s, count_gpu_experts(*plan));
    CHECK(plan->solver == "heuristic");
    REQUIRE(plan->predicted.memory.gpu_bytes <= budget.gpu_mem);
    REQUIRE(plan->predicted.memory.ram_bytes <= budget.ram);
    // CPU time: the planner is single-threaded, and on a shared 2-core CI machine the wall
    // time mostly measures the other jobs.
    REQUIRE(cpu_s < 5.0);
  }
}

// The heuristic is not exact, so it is not exactly monotone either: allowed to regress by
// at most 1% against its own best at a smaller budget (the exact solver is held to 0 above).
TEST_CASE("planner: more GPU memory is never slower (heuristic, 4 x 16 experts)", "[planner]") {
  const ModelShape shape = tiny_shape(4, 16, 4);
  const Profile profile = random_profile(shape, 3, 150);
  const uint64_t B = expert_bytes_of(shape);
  for (bool unified : {false, true}) {
    Instance in{shape, profile, test_machine(unified), {}};
    in.budget.ram = fixed_ram(in) + 40 * B + (unified ? 64 * B : 0);
    double prev = 1e300;
    for (uint64_t n = 0; n <= 64; n += 8) {
      in.budget.gpu_mem = n * B;
      const Plan p = plan_with(in, PlanSolver::heuristic);
      INFO("unified " << unified << " gpu budget " << n << " experts");
      require_within_budget(in, p);
      CHECK(p.predicted.token_us <= prev * 1.01);
      prev = std::min(prev, p.predicted.token_us);
    }
  }
}

TEST_CASE("planner: a costlier upload never gets more dynamic GPU slots", "[planner]") {
  for (uint64_t seed = 300; seed < 304; ++seed) {
    for (PlanSolver solver : {PlanSolver::exact, PlanSolver::heuristic}) {
      Instance in;
      in.shape = tiny_shape(2, 5, 2);
      in.profile = random_profile(in.shape, seed, 150);
      const uint64_t B = expert_bytes_of(in.shape);
      uint32_t prev_slots = UINT32_MAX;
      for (double upload : {1000.0, 100.0, 10.0, 1.0, 0.1, 0.01}) {
        in.hw = test_machine(false, upload);
        in.hw.gpus[0].submit_wait_us = 1.0;
        in.budget.ram = fixed_ram(in) + 12 * B;
        in.budget.gpu_mem = 3 * B;
        const Plan p = plan_with(in, solver);
        INFO("seed " << seed << " upload " << upload << " GB/s, solver " << p.solver);
        require_within_budget(in, p);
        CHECK(p.placement.n_dynamic_slots <= prev_slots);
        prev_slots = p.placement.n_dynamic_slots;
      }
      INFO("seed " << seed << " solver " << (solver == PlanSolver::exact ? "exact" : "heuristic"));
      CHECK(prev_slots == 0);  // at 10 MB/s an upload never pays
    }
  }
}

TEST_CASE("planner: a saturated shared memory bus moves fewer experts off the CPU", "[planner]") {
  ModelShape shape = tiny_shape(4, 16, 4);
  shape.n_embd = 2048;  // 21B-sized experts, so that the GPU's share outweighs a sync
  shape.n_ff_exp = 768;
  const Profile profile = random_profile(shape, 11, 150);
  const uint64_t B = expert_bytes_of(shape);
  Instance in{shape, profile, test_machine(true), {}};
  in.hw.gpus[0].submit_wait_us = 10;
  in.budget.gpu_mem = 32 * B;
  in.budget.ram = fixed_ram(in) + 64 * B + 40 * B;
  in.hw.cpu.isa[0].read_bandwidth_gbps = 40;
  in.hw.gpus[0].bandwidth_gbps = 60;
  // Free bus: far above what CPU and GPU read together.
  in.hw.shared_bandwidth_gbps = 1000;
  const Plan free_bus = plan_with(in, PlanSolver::heuristic);
  // Saturated bus: no more than the CPU alone already reads.
  in.hw.shared_bandwidth_gbps = 40;
  const Plan saturated = plan_with(in, PlanSolver::heuristic);
  std::printf("unified machine: %zu experts on GPU with a free bus (%.1f us/token), %zu when saturated (%.1f us/token)\n",
              count_gpu_experts(free_bus), free_bus.predicted.token_us, count_gpu_experts(saturated),
              saturated.predicted.token_us);
  CHECK(count_gpu_experts(free_bus) > 0);
  CHECK(count_gpu_experts(saturated) < count_gpu_experts(free_bus));
  CHECK(saturated.predicted.token_us >= free_bus.predicted.token_us);
}

TEST_CASE("planner: an impossible budget is an error with the numbers", "[planner]") {
  Instance in;
  in.shape = tiny_shape(2, 4, 2);
  in.profile = random_profile(in.shape, 1, 50);
  in.hw = test_machine(false);
  in.budget.gpu_mem = 0;
  in.budget.ram = fixed_ram(in) - 1;
  for (PlanSolver solver : {PlanSolver::exact, PlanSolver::heuristic}) {
    PlanOptions o;
    o.solver = solver;
    auto p = make_plan(in.shape, in.profile, in.hw, in.budget, o);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == ErrorCode::out_of_memory);
    CHECK_THAT(p.status().message(), Catch::Contains("no placement fits the budget"));
    CHECK_THAT(p.status().message(), Catch::Contains(" of RAM and one RAM cache slot per layer"));
  }
}

TEST_CASE("planner: a profile of another shape is refused", "[planner]") {
  const ModelShape shape = tiny_shape(2, 4, 2);
  const Profile profile = random_profile(tiny_shape(2, 5, 2), 1, 20);
  auto p = make_plan(shape, profile, test_machine(false), Budget{1ull << 30, 1ull << 30, Objective::decode}, PlanOptions{});
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("profile shape"));
}

TEST_CASE("planner: a machine without GPU gets a CPU-only plan; prefill objective plans too", "[planner]") {
  Instance in;
  in.shape = tiny_shape(3, 8, 2);
  in.profile = random_profile(in.shape, 4, 80);
  in.hw = test_machine(false);
  in.hw.gpus.clear();
  in.budget = {1ull << 30, 1ull << 30, Objective::decode};
  const Plan p = plan_with(in, PlanSolver::automatic);
  CHECK(p.predicted.memory.gpu_bytes == 0);
  CHECK(count_gpu_experts(p) == 0);
  CHECK(p.placement.attention == Device::cpu);
  in.hw = test_machine(false);
  in.budget.objective = Objective::prefill;
  const Plan pre = plan_with(in, PlanSolver::automatic);
  CHECK(pre.objective == Objective::prefill);
  CHECK(pre.predicted.tokens_per_s > 0);
  require_within_budget(in, pre);
}
