// make_plan: chooses a Placement for a model on a machine within a memory Budget, by
// minimising the CostModel's predicted time per token (decode) or per prefill token.
//
// Search space: attention and output head on cpu|gpu; n_dynamic_slots and ram_cache_experts
// per layer (uniform over layers); a tier per expert (plan.h).
// Solvers:
//   exact      every tier assignment of each layer (4^n_expert), combined over layers by a
//              Pareto dynamic programme over (time, gpu bytes, ram bytes), for every choice of
//              attention, head, slots and cache size. Used when n_layer * n_expert <=
//              PlanOptions::exact_max_experts (default 12) and n_expert <= 6; refused above
//              n_expert 6 or 24 experts in total.
//   heuristic  for each attention/head choice (screened by one run each when there are more
//              than 256 experts) and a sweep over the slot and cache sizes (warm-started from
//              the best placement so far): greedy by benefit per byte (time saved / share of the remaining budget
//              used), including block moves of a layer's m hottest experts to the GPU (so a
//              per-layer sync cost does not stop the first move), then local search (single
//              moves and pair swaps within a layer, demote-one/promote-one across layers)
//              until no move helps. Runs in well under a second for the 21B shape (52 x 64).
//              Not exact: a per-layer sync cost can make it best to concentrate GPU work in
//              fewer layers, which needs several experts of two layers to move at once.
//              planner_test.cpp measures the gap against the exact solver on 150 seeded
//              small instances (equal on >= 90%, worst 1.27x, mean <= 1.02x).
// Memory never exceeds the budget: gpu <= min(budget.gpu_mem, gpu memory_bytes), ram <=
// min(budget.ram, ram_bytes), with GPU bytes counted in RAM too on a unified-memory GPU.
// Errors: out_of_memory when no placement fits (the message gives the minimum bytes needed
// and the budget); invalid_argument for a profile of another shape, a hardware profile
// without CPU/storage entries, or sizes that do not divide the dtype's block size.
#pragma once

#include <string>

#include "core/model_shape.h"
#include "core/status.h"
#include "planner/budget.h"
#include "planner/cost_model.h"
#include "planner/hardware_profile.h"
#include "planner/plan.h"
#include "planner/profile.h"

namespace tandem {

enum class PlanSolver { automatic, exact, heuristic };

struct PlanOptions {
  CostOptions cost;               // dtypes, context length, prefill batch; objective comes from Budget
  PlanSolver solver = PlanSolver::automatic;
  uint32_t exact_max_experts = 12;  // automatic: exact at or below this many experts in total
};

Result<Plan> make_plan(const ModelShape& shape, const Profile& profile, const HardwareProfile& hw,
                       const Budget& budget, const PlanOptions& options);

}  // namespace tandem
