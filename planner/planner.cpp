#include "planner/planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

namespace tandem {

namespace {

constexpr double k_inf = std::numeric_limits<double>::infinity();
constexpr ExpertTier k_all_tiers[] = {ExpertTier::gpu_pinned, ExpertTier::gpu_dynamic,
                                      ExpertTier::ram_cpu, ExpertTier::storage};
constexpr double k_mib = 1024.0 * 1024.0;
constexpr uint32_t k_pair_swap_max_experts = 16;

struct Limits {
  uint64_t gpu = 0;
  uint64_t ram = 0;
};

struct Candidate {
  Placement placement;
  double token_us = k_inf;
};

bool tier_allowed(const CostModel& cm, ExpertTier t) { return cm.has_gpu() || !runs_on_gpu(t); }

// ---------------------------------------------------------------------------------------
// Exact: per layer every assignment, then a Pareto DP over layers.

struct LayerOption {
  double t;
  uint64_t g, r;
  bool gpu;
  uint32_t code;
};

struct DpState {
  double t;
  uint64_t g, r;
  bool gpu;
  std::vector<uint32_t> codes;
};

template <class T>
void pareto_prune(std::vector<T>& v) {
  std::sort(v.begin(), v.end(), [](const T& a, const T& b) { return a.t < b.t; });
  std::vector<T> kept;
  for (auto& x : v) {
    bool dominated = false;
    for (const auto& k : kept) {
      if (k.g <= x.g && k.r <= x.r && (!k.gpu || x.gpu)) {
        dominated = true;
        break;
      }
    }
    if (!dominated) kept.push_back(std::move(x));
  }
  v = std::move(kept);
}

std::vector<ExpertTier> decode_tiers(uint32_t code, uint32_t n) {
  std::vector<ExpertTier> t(n);
  for (uint32_t e = 0; e < n; ++e, code /= 4) t[e] = k_all_tiers[code % 4];
  return t;
}

Candidate solve_exact(const CostModel& cm, const Limits& lim, Device attn, Device head) {
  Candidate best;
  const uint32_t n_e = cm.n_expert();
  uint64_t fixed_g = 0, fixed_r = 0;
  cm.fixed_memory(attn, head, fixed_g, fixed_r);
  if (fixed_g > lim.gpu || fixed_r > lim.ram) return best;
  const uint32_t n_codes = 1u << (2 * n_e);
  for (uint32_t S = 1; S <= n_e; ++S) {
    for (uint32_t R = 1; R <= n_e; ++R) {
      Placement g;
      g.attention = attn;
      g.output_head = head;
      g.n_dynamic_slots = S;
      g.ram_cache_experts = R;
      std::vector<DpState> states{{0.0, fixed_g, fixed_r, attn == Device::gpu || head == Device::gpu, {}}};
      for (uint32_t l = 0; l < cm.n_layer() && !states.empty(); ++l) {
        std::vector<LayerOption> opts;
        for (uint32_t code = 0; code < n_codes; ++code) {
          const auto tiers = decode_tiers(code, n_e);
          bool ok = true;
          for (ExpertTier t : tiers) ok = ok && tier_allowed(cm, t);
          if (!ok) continue;
          const LayerLoad load = cm.layer_load(l, tiers);
          uint64_t mg = 0, mr = 0, ms = 0;
          cm.layer_memory(load, g, mg, mr, ms);
          opts.push_back({cm.layer_cost(l, load, g).total_us, mg, mr,
                          load.n_gpu_pinned + load.n_gpu_dynamic > 0, code});
        }
        pareto_prune(opts);
        std::vector<DpState> next;
        for (const auto& s : states) {
          for (const auto& o : opts) {
            if (s.g + o.g > lim.gpu || s.r + o.r > lim.ram) continue;
            DpState n{s.t + o.t, s.g + o.g, s.r + o.r, s.gpu || o.gpu, s.codes};
            n.codes.push_back(o.code);
            next.push_back(std::move(n));
          }
        }
        pareto_prune(next);
        states = std::move(next);
      }
      for (const auto& s : states) {
        const double t = s.t + cm.head_us(head) + (s.gpu ? cm.submit_us() : 0.0);
        if (t < best.token_us) {
          best.token_us = t;
          best.placement = g;
          best.placement.tiers.clear();
          for (uint32_t c : s.codes) best.placement.tiers.push_back(decode_tiers(c, n_e));
        }
      }
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// Heuristic: greedy by benefit per byte, then local search.

struct Move {
  uint32_t layer = 0;
  std::vector<std::pair<uint32_t, ExpertTier>> changes;
  double dt = 0;       // change of the layer's time (us); negative is better
  int64_t dg = 0, dr = 0;
};

class Search {
 public:
  Search(const CostModel& cm, const Limits& lim, const Placement& globals)
      : cm_(cm), lim_(lim), g_(globals) {
    const uint32_t L = cm.n_layer(), E = cm.n_expert();
    g_.tiers.assign(L, std::vector<ExpertTier>(E, ExpertTier::storage));
    loads_.resize(L);
    time_.resize(L);
    mem_g_.resize(L);
    mem_r_.resize(L);
    uint64_t fg = 0, fr = 0;
    cm.fixed_memory(g_.attention, g_.output_head, fg, fr);
    used_g_ = fg;
    used_r_ = fr;
    for (uint32_t l = 0; l < L; ++l) {
      loads_[l] = cm.layer_load(l, g_.tiers[l]);
      refresh_layer(l);
      used_g_ += mem_g_[l];
      used_r_ += mem_r_[l];
    }
    // Hottest first: block moves take a prefix of this order.
    order_.resize(L);
    for (uint32_t l = 0; l < L; ++l) {
      order_[l].resize(E);
      for (uint32_t e = 0; e < E; ++e) order_[l][e] = e;
      std::stable_sort(order_[l].begin(), order_[l].end(), [&](uint32_t a, uint32_t b) {
        return cm.activation_probability(l, a) > cm.activation_probability(l, b);
      });
    }
  }

  bool feasible() const { return used_g_ <= lim_.gpu && used_r_ <= lim_.ram; }

  double token_us() const {
    double t = 0;
    bool gpu = g_.attention == Device::gpu || g_.output_head == Device::gpu;
    for (uint32_t l = 0; l < cm_.n_layer(); ++l) {
      t += time_[l];
      gpu = gpu || loads_[l].n_gpu_pinned + loads_[l].n_gpu_dynamic > 0;
    }
    return t + cm_.head_us(g_.output_head) + (gpu ? cm_.submit_us() : 0.0);
  }

  const Placement& placement() const { return g_; }

  void run() {
    greedy();
    for (int round = 0; round < 8; ++round) {
      bool improved = local_moves();
      improved = cross_layer_swaps() || improved;
      if (!improved) break;
    }
  }

 private:
  void refresh_layer(uint32_t l) {
    time_[l] = cm_.layer_cost(l, loads_[l], g_).total_us;
    uint64_t s = 0;
    cm_.layer_memory(loads_[l], g_, mem_g_[l], mem_r_[l], s);
  }

  bool any_gpu_except(uint32_t layer) const {
    if (g_.attention == Device::gpu || g_.output_head == Device::gpu) return true;
    for (uint32_t l = 0; l < cm_.n_layer(); ++l) {
      if (l != layer && loads_[l].n_gpu_pinned + loads_[l].n_gpu_dynamic > 0) return true;
    }
    return false;
  }

  // Fills dt/dg/dr of a move (the submit cost is charged when it turns the GPU on or off).
  void score(Move& m, bool others_gpu) const {
    LayerLoad load = loads_[m.layer];
    for (auto [e, t] : m.changes) {
      cm_.add_expert(load, m.layer, e, g_.tiers[m.layer][e], -1);
      cm_.add_expert(load, m.layer, e, t, +1);
    }
    uint64_t mg = 0, mr = 0, ms = 0;
    cm_.layer_memory(load, g_, mg, mr, ms);
    m.dt = cm_.layer_cost(m.layer, load, g_).total_us - time_[m.layer];
    if (!others_gpu) {
      const bool before = loads_[m.layer].n_gpu_pinned + loads_[m.layer].n_gpu_dynamic > 0;
      const bool after = load.n_gpu_pinned + load.n_gpu_dynamic > 0;
      m.dt += (static_cast<double>(after) - static_cast<double>(before)) * cm_.submit_us();
    }
    m.dg = static_cast<int64_t>(mg) - static_cast<int64_t>(mem_g_[m.layer]);
    m.dr = static_cast<int64_t>(mr) - static_cast<int64_t>(mem_r_[m.layer]);
  }

  bool fits(const Move& m) const {
    return static_cast<int64_t>(used_g_) + m.dg <= static_cast<int64_t>(lim_.gpu) &&
           static_cast<int64_t>(used_r_) + m.dr <= static_cast<int64_t>(lim_.ram);
  }

  // Time saved per share of the remaining budget; free moves rank above all others.
  double benefit_per_byte(const Move& m) const {
    const double left_g = std::max(1.0, static_cast<double>(lim_.gpu) - static_cast<double>(used_g_));
    const double left_r = std::max(1.0, static_cast<double>(lim_.ram) - static_cast<double>(used_r_));
    const double cost = std::max<double>(0, static_cast<double>(m.dg)) / left_g +
                        std::max<double>(0, static_cast<double>(m.dr)) / left_r;
    return cost <= 0 ? 1e30 * -m.dt : -m.dt / cost;
  }

  void apply(const Move& m) {
    used_g_ -= mem_g_[m.layer];
    used_r_ -= mem_r_[m.layer];
    for (auto [e, t] : m.changes) g_.tiers[m.layer][e] = t;
    // Rebuilt rather than updated, so that no rounding accumulates over many moves.
    loads_[m.layer] = cm_.layer_load(m.layer, g_.tiers[m.layer]);
    refresh_layer(m.layer);
    used_g_ += mem_g_[m.layer];
    used_r_ += mem_r_[m.layer];
  }

  // The best improving, fitting move of one layer by benefit per byte.
  std::optional<Move> best_move(uint32_t l, bool others_gpu) const {
    std::optional<Move> best;
    double best_score = 0;
    auto consider = [&](Move m) {
      score(m, others_gpu);
      if (m.dt >= -1e-12 || !fits(m)) return;
      const double s = benefit_per_byte(m);
      if (!best || s > best_score) {
        best_score = s;
        best = std::move(m);
      }
    };
    const uint32_t E = cm_.n_expert();
    for (uint32_t e = 0; e < E; ++e) {
      for (ExpertTier t : k_all_tiers) {
        if (t == g_.tiers[l][e] || !tier_allowed(cm_, t)) continue;
        consider(Move{l, {{e, t}}, 0, 0, 0});
      }
    }
    if (cm_.has_gpu()) {
      for (ExpertTier t : {ExpertTier::gpu_pinned, ExpertTier::gpu_dynamic}) {
        for (uint32_t m = 2; m <= E; m *= 2) {
          Move mv{l, {}, 0, 0, 0};
          for (uint32_t e : order_[l]) {
            if (mv.changes.size() == m) break;
            if (!runs_on_gpu(g_.tiers[l][e])) mv.changes.push_back({e, t});
          }
          if (mv.changes.size() == m) consider(std::move(mv));
        }
      }
    }
    return best;
  }

  void greedy() {
    const uint32_t L = cm_.n_layer();
    std::vector<std::optional<Move>> best(L);
    std::vector<bool> others(L);
    for (uint32_t l = 0; l < L; ++l) {
      others[l] = any_gpu_except(l);
      best[l] = best_move(l, others[l]);
    }
    for (size_t step = 0; step < 64ull * L * cm_.n_expert(); ++step) {
      int pick = -1;
      double pick_score = 0;
      for (uint32_t l = 0; l < L; ++l) {
        if (!best[l]) continue;
        if (!fits(*best[l])) {
          best[l] = best_move(l, others[l]);
          if (!best[l]) continue;
        }
        const double s = benefit_per_byte(*best[l]);
        if (pick < 0 || s > pick_score) {
          pick = static_cast<int>(l);
          pick_score = s;
        }
      }
      if (pick < 0) break;
      const bool gpu_before = any_gpu_except(L);
      apply(*best[pick]);
      const bool gpu_after = any_gpu_except(L);
      // Scores depend on the remaining budget and on whether the GPU is in use at all.
      for (uint32_t l = 0; l < L; ++l) {
        if (static_cast<int>(l) == pick || gpu_before != gpu_after) {
          others[l] = any_gpu_except(l);
          best[l] = best_move(l, others[l]);
        }
      }
    }
  }

  // Single moves and pair swaps within each layer that lower the time and fit.
  bool local_moves() {
    bool improved = false;
    const uint32_t E = cm_.n_expert();
    for (uint32_t l = 0; l < cm_.n_layer(); ++l) {
      bool again = true;
      while (again) {
        again = false;
        const bool others = any_gpu_except(l);
        Move best;
        best.dt = -1e-9;
        bool found = false;
        auto consider = [&](Move m) {
          score(m, others);
          if (m.dt < best.dt && fits(m)) {
            best = std::move(m);
            found = true;
          }
        };
        for (uint32_t i = 0; i < E; ++i) {
          for (ExpertTier ti : k_all_tiers) {
            if (ti == g_.tiers[l][i] || !tier_allowed(cm_, ti)) continue;
            consider(Move{l, {{i, ti}}, 0, 0, 0});
            // Pair swaps cost O(16 E^2) per layer: only for small layers.
            for (uint32_t j = 0; j < (E <= k_pair_swap_max_experts ? E : 0); ++j) {
              if (j == i) continue;
              for (ExpertTier tj : k_all_tiers) {
                if (tj == g_.tiers[l][j] || !tier_allowed(cm_, tj)) continue;
                consider(Move{l, {{i, ti}, {j, tj}}, 0, 0, 0});
              }
            }
          }
        }
        if (found) {
          apply(best);
          improved = again = true;
        }
      }
    }
    return improved;
  }

  // Moves memory between layers: demote one expert in layer b to afford a promotion in layer a.
  bool cross_layer_swaps() {
    const uint32_t L = cm_.n_layer(), E = cm_.n_expert();
    if (L < 2) return false;
    bool improved = false;
    std::vector<Move> ups, downs;
    for (uint32_t l = 0; l < L; ++l) {
      const bool others = any_gpu_except(l);
      for (uint32_t e = 0; e < E; ++e) {
        for (ExpertTier t : k_all_tiers) {
          if (t == g_.tiers[l][e] || !tier_allowed(cm_, t)) continue;
          Move m{l, {{e, t}}, 0, 0, 0};
          score(m, others);
          if (m.dt < 0 && (m.dg > 0 || m.dr > 0)) ups.push_back(m);
          if (m.dg < 0 || m.dr < 0) downs.push_back(m);
        }
      }
    }
    std::sort(ups.begin(), ups.end(), [](const Move& a, const Move& b) { return a.dt < b.dt; });
    std::sort(downs.begin(), downs.end(), [](const Move& a, const Move& b) { return a.dt < b.dt; });
    std::vector<bool> touched(L, false);
    for (const Move& up : ups) {
      if (touched[up.layer]) continue;
      for (const Move& down : downs) {
        if (down.layer == up.layer || touched[down.layer]) continue;
        if (up.dt + down.dt >= -1e-9) break;  // downs sorted by loss: nothing better follows
        if (static_cast<int64_t>(used_g_) + up.dg + down.dg > static_cast<int64_t>(lim_.gpu) ||
            static_cast<int64_t>(used_r_) + up.dr + down.dr > static_cast<int64_t>(lim_.ram)) {
          continue;
        }
        const double before = token_us();
        const Move undo_up = inverse(up), undo_down = inverse(down);
        apply(down);
        apply(up);
        if (token_us() < before - 1e-9) {
          improved = true;
          touched[up.layer] = touched[down.layer] = true;
          break;
        }
        apply(undo_up);  // the submit term can make the pair worse than its parts
        apply(undo_down);
      }
    }
    return improved;
  }

  Move inverse(const Move& m) const {
    Move r{m.layer, {}, 0, 0, 0};
    for (auto [e, t] : m.changes) r.changes.push_back({e, g_.tiers[m.layer][e]});
    return r;
  }

  const CostModel& cm_;
  Limits lim_;
  Placement g_;
  std::vector<LayerLoad> loads_;
  std::vector<double> time_;
  std::vector<uint64_t> mem_g_, mem_r_;
  uint64_t used_g_ = 0, used_r_ = 0;
  std::vector<std::vector<uint32_t>> order_;
};

std::vector<uint32_t> size_steps(uint32_t n) {
  std::vector<uint32_t> v;
  for (uint32_t x : {1u, 2u, 3u, 4u, 6u, 8u, 12u, 16u, 24u, 32u, 48u, 64u, 96u, 128u, 192u, 256u}) {
    if (x < n) v.push_back(x);
  }
  v.push_back(n);
  return v;
}

// Coordinate search over (slots, cache size) indexes into size_steps, starting near 4.
Candidate solve_heuristic(const CostModel& cm, const Limits& lim, Device attn, Device head) {
  Candidate best;
  uint64_t fixed_g = 0, fixed_r = 0;
  cm.fixed_memory(attn, head, fixed_g, fixed_r);
  if (fixed_g > lim.gpu || fixed_r > lim.ram) return best;
  const std::vector<uint32_t> steps = size_steps(cm.n_expert());
  const int n = static_cast<int>(steps.size());
  std::vector<double> tried(steps.size() * steps.size(), -1.0);
  auto run = [&](int si, int ri) {
    double& memo = tried[static_cast<size_t>(si) * steps.size() + static_cast<size_t>(ri)];
    if (memo >= 0) return memo;
    Placement g;
    g.attention = attn;
    g.output_head = head;
    g.n_dynamic_slots = cm.has_gpu() ? steps[si] : 0;
    g.ram_cache_experts = steps[ri];
    Search search(cm, lim, g);
    if (!search.feasible()) return memo = k_inf;
    search.run();
    memo = search.token_us();
    if (memo < best.token_us) {
      best.token_us = memo;
      best.placement = search.placement();
    }
    return memo;
  };
  const int start = static_cast<int>(std::find(steps.begin(), steps.end(), std::min(4u, cm.n_expert())) - steps.begin());
  int si = cm.has_gpu() ? start : 0, ri = start;
  double cur = run(si, ri);
  // The all-storage start needs one cache slot per layer: fall back to the smallest cache.
  if (cur == k_inf) cur = run(si, ri = 0);
  for (int iter = 0; iter < 4 * n; ++iter) {
    int best_si = si, best_ri = ri;
    double best_t = cur;
    for (auto [dsi, dri] : {std::pair{-1, 0}, {1, 0}, {0, -1}, {0, 1}}) {
      const int a = si + dsi, b = ri + dri;
      if (a < 0 || b < 0 || a >= n || b >= n || (!cm.has_gpu() && a != 0)) continue;
      const double t = run(a, b);
      if (t < best_t - 1e-9) {
        best_t = t;
        best_si = a;
        best_ri = b;
      }
    }
    if (best_si == si && best_ri == ri) break;
    si = best_si;
    ri = best_ri;
    cur = best_t;
  }
  return best;
}

std::string mib(double bytes) { return fmt::format("{:.1f} MiB", bytes / k_mib); }

// Why each expert sits where it does: the layer-time change of moving it alone elsewhere.
void explain_experts(const CostModel& cm, Plan& plan) {
  const Placement& pl = plan.placement;
  plan.expert_reasons.assign(cm.n_layer(), std::vector<std::string>(cm.n_expert()));
  for (uint32_t l = 0; l < cm.n_layer(); ++l) {
    const LayerLoad load = cm.layer_load(l, pl.tiers[l]);
    const double base = cm.layer_cost(l, load, pl).total_us;
    for (uint32_t e = 0; e < cm.n_expert(); ++e) {
      std::string alt;
      for (ExpertTier t : k_all_tiers) {
        if (t == pl.tiers[l][e] || !tier_allowed(cm, t)) continue;
        LayerLoad m = load;
        cm.add_expert(m, l, e, pl.tiers[l][e], -1);
        cm.add_expert(m, l, e, t, +1);
        Placement g = pl;
        if (t == ExpertTier::gpu_dynamic && g.n_dynamic_slots == 0) g.n_dynamic_slots = 1;
        if (t == ExpertTier::storage && g.ram_cache_experts == 0) g.ram_cache_experts = 1;
        alt += fmt::format("{}{} {:+.2f} us", alt.empty() ? "" : ", ", expert_tier_name(t),
                           cm.layer_cost(l, m, g).total_us - base);
      }
      plan.expert_reasons[l][e] = fmt::format(
          "used by {:.1f}% of tokens, {:.0f}% of gate neurons active; moving it alone: {}",
          100.0 * cm.activation_probability(l, e), 100.0 * cm.gate_activity(l, e), alt);
    }
  }
}

}  // namespace

Result<Plan> make_plan(const ModelShape& shape, const Profile& profile, const HardwareProfile& hw,
                       const Budget& budget, const PlanOptions& options) {
  CostOptions co = options.cost;
  co.objective = budget.objective;
  TANDEM_ASSIGN_OR_RETURN(CostModel cm, CostModel::create(shape, profile, hw, co));
  Limits lim;
  lim.gpu = cm.has_gpu() ? std::min(budget.gpu_mem, hw.gpus[co.gpu_index].memory_bytes) : 0;
  lim.ram = std::min(budget.ram, hw.ram_bytes);
  const uint64_t n_total = uint64_t{shape.n_layer} * shape.n_expert;
  bool exact = options.solver == PlanSolver::exact;
  if (options.solver == PlanSolver::automatic) {
    exact = n_total <= options.exact_max_experts && shape.n_expert <= 6;
  }
  if (exact && shape.n_expert > 8) {
    return make_error(ErrorCode::invalid_argument,
                      "the exact solver enumerates 4^n_expert placements per layer: n_expert {} is above 8",
                      shape.n_expert);
  }
  std::vector<Device> devices{Device::cpu};
  if (cm.has_gpu()) devices.push_back(Device::gpu);

  Candidate best;
  std::vector<std::string> reasons;
  for (Device attn : devices) {
    for (Device head : devices) {
      Candidate c = exact ? solve_exact(cm, lim, attn, head) : solve_heuristic(cm, lim, attn, head);
      reasons.push_back(c.token_us < k_inf
                            ? fmt::format("attention on {}, output head on {}: best found {:.2f} us/token",
                                          device_name(attn), device_name(head), c.token_us)
                            : fmt::format("attention on {}, output head on {}: does not fit the budget",
                                          device_name(attn), device_name(head)));
      if (c.token_us < best.token_us) best = std::move(c);
    }
  }
  if (best.token_us == k_inf) {
    uint64_t g = 0, r = 0;
    cm.fixed_memory(Device::cpu, Device::cpu, g, r);
    const uint64_t cache = uint64_t{shape.n_layer} * cm.expert_bytes();
    return make_error(ErrorCode::out_of_memory,
                      "no placement fits the budget (gpu {} , ram {}): with attention and output head "
                      "on the CPU the non-expert weights and KV cache need {} of RAM and one RAM cache "
                      "slot per layer another {} ({} layers x {})",
                      mib(static_cast<double>(lim.gpu)), mib(static_cast<double>(lim.ram)),
                      mib(static_cast<double>(r)), mib(static_cast<double>(cache)), shape.n_layer,
                      mib(static_cast<double>(cm.expert_bytes())));
  }

  Plan plan;
  plan.model_name = profile.model_name;
  plan.model_hash = profile.model_hash;
  plan.hardware_name = hw.name;
  plan.objective = budget.objective;
  plan.solver = exact ? "exact" : "heuristic";
  plan.n_layer = shape.n_layer;
  plan.n_expert = shape.n_expert;
  plan.expert_bytes = cm.expert_bytes();
  plan.placement = std::move(best.placement);
  bool any_dynamic = false, any_storage = false;
  for (const auto& layer : plan.placement.tiers) {
    for (ExpertTier t : layer) {
      any_dynamic = any_dynamic || t == ExpertTier::gpu_dynamic;
      any_storage = any_storage || t == ExpertTier::storage;
    }
  }
  // Sizes that nothing uses are reported as 0 (the cost and memory do not depend on them).
  if (!any_dynamic) plan.placement.n_dynamic_slots = 0;
  if (!any_storage) plan.placement.ram_cache_experts = 0;
  TANDEM_ASSIGN_OR_RETURN(plan.predicted, cm.evaluate(plan.placement));
  const MemoryUse& m = plan.predicted.memory;
  plan.reasons = std::move(reasons);
  plan.reasons.push_back(fmt::format(
      "chosen: attention on {}, output head on {} ({} solver, objective {})",
      device_name(plan.placement.attention), device_name(plan.placement.output_head), plan.solver,
      objective_name(budget.objective)));
  plan.reasons.push_back(fmt::format(
      "{} dynamic GPU slots per layer (expected hit rate {:.3f}), {} RAM cache slots per layer for "
      "storage experts (expected hit rate {:.3f})",
      plan.placement.n_dynamic_slots, plan.predicted.dynamic_hit_rate, plan.placement.ram_cache_experts,
      plan.predicted.ram_cache_hit_rate));
  plan.reasons.push_back(fmt::format("memory: gpu {} of {} budget, ram {} of {} budget{}",
                                     mib(static_cast<double>(m.gpu_bytes)), mib(static_cast<double>(lim.gpu)),
                                     mib(static_cast<double>(m.ram_bytes)), mib(static_cast<double>(lim.ram)),
                                     cm.unified() ? " (unified memory: GPU bytes counted in RAM too)" : ""));
  explain_experts(cm, plan);
  return plan;
}

}  // namespace tandem
