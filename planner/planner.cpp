#include "planner/planner.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

namespace tandem {

namespace {

constexpr double k_inf = std::numeric_limits<double>::infinity();
constexpr ExpertTier k_all_tiers[] = {ExpertTier::gpu_pinned, ExpertTier::gpu_dynamic,
                                      ExpertTier::ram_cpu, ExpertTier::storage};
constexpr double k_mib = 1024.0 * 1024.0;
constexpr uint32_t k_pair_swap_max_experts = 16;
constexpr uint32_t k_greedy_candidates = 8;
constexpr int k_local_rounds = 8;

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

// Equal times keep the option with fewer bytes first, so that a tie (e.g. a gpu-dynamic expert
// with a slot of its own, which never misses, against the same expert pinned) goes to the
// smaller placement.
template <class T>
void pareto_prune(std::vector<T>& v) {
  std::sort(v.begin(), v.end(), [](const T& a, const T& b) { return a.t < b.t || (a.t == b.t && a.g + a.r < b.g + b.r); });
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
  // Starts from `warm` (a placement found with other slot/cache sizes) when it fits, else
  // from every expert on storage.
  Search(const CostModel& cm, const Limits& lim, const Placement& globals,
         const std::vector<std::vector<ExpertTier>>* warm)
      : cm_(cm), lim_(lim), g_(globals) {
    const uint32_t L = cm.n_layer(), E = cm.n_expert();
    loads_.resize(L);
    time_.resize(L);
    mem_g_.resize(L);
    mem_r_.resize(L);
    if (warm && warm->size() == L) {
      g_.tiers = *warm;
      reset();
      repair();
      warm_ = feasible();
    }
    // Every expert in RAM when that fits (fewer greedy steps), else every expert on storage.
    if (!warm_) {
      g_.tiers.assign(L, std::vector<ExpertTier>(E, ExpertTier::ram_cpu));
      reset();
    }
    if (!warm_ && !feasible()) {
      g_.tiers.assign(L, std::vector<ExpertTier>(E, ExpertTier::storage));
      reset();
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
    // prefix_[l][t][i]: load of the i hottest experts of layer l, all in tier t.
    prefix_.assign(L, std::array<std::vector<LayerLoad>, 4>{});
    for (uint32_t l = 0; l < L; ++l) {
      for (size_t t = 0; t < 4; ++t) {
        prefix_[l][t].assign(E + 1, LayerLoad{});
        for (uint32_t i = 0; i < E; ++i) {
          prefix_[l][t][i + 1] = prefix_[l][t][i];
          cm.add_expert(prefix_[l][t][i + 1], l, order_[l][i], k_all_tiers[t]);
        }
      }
    }
  }

  // Makes a warm start fit other slot/cache sizes: demotes the coldest GPU experts to RAM
  // while the GPU is over budget, then the coldest RAM experts to storage while RAM is.
  void repair() {
    const uint32_t L = cm_.n_layer(), E = cm_.n_expert();
    for (int pass = 0; pass < 2 && !feasible(); ++pass) {
      std::vector<std::pair<double, ExpertId>> cands;
      for (uint32_t l = 0; l < L; ++l) {
        for (uint32_t e = 0; e < E; ++e) {
          const ExpertTier t = g_.tiers[l][e];
          if (pass == 0 ? runs_on_gpu(t) : t != ExpertTier::storage) {
            cands.push_back({cm_.activation_probability(l, e), {static_cast<int32_t>(l), static_cast<int32_t>(e)}});
          }
        }
      }
      std::sort(cands.begin(), cands.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [p, id] : cands) {
        if (pass == 0 ? used_g_ <= lim_.gpu : used_r_ <= lim_.ram) break;
        Move m{static_cast<uint32_t>(id.layer), {{static_cast<uint32_t>(id.expert), pass == 0 ? ExpertTier::ram_cpu : ExpertTier::storage}}, 0, 0, 0};
        apply(m);
      }
    }
  }

  void reset() {
    uint64_t fg = 0, fr = 0;
    cm_.fixed_memory(g_.attention, g_.output_head, fg, fr);
    used_g_ = fg;
    used_r_ = fr;
    for (uint32_t l = 0; l < cm_.n_layer(); ++l) {
      loads_[l] = cm_.layer_load(l, g_.tiers[l]);
      refresh_layer(l);
      used_g_ += mem_g_[l];
      used_r_ += mem_r_[l];
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

  void run(int max_rounds) {
    greedy();
    for (int round = 0; round < max_rounds; ++round) {
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
  // Scores on the layer's own load, changed in place and restored bit for bit afterwards:
  // copying a whole LayerLoad (its LRU sums) per scored move would dominate the search.
  void score(Move& m, bool others_gpu) const {
    LayerLoad& load = loads_[m.layer];
    const LoadSums saved = load;
    bool dynamic_touched = false, storage_touched = false;
    for (auto [e, t] : m.changes) {
      for (ExpertTier x : {g_.tiers[m.layer][e], t}) {
        dynamic_touched = dynamic_touched || x == ExpertTier::gpu_dynamic;
        storage_touched = storage_touched || x == ExpertTier::storage;
      }
    }
    if (dynamic_touched) saved_dynamic_ = load.dynamic_lru;
    if (storage_touched) saved_storage_ = load.storage_lru;
    for (auto [e, t] : m.changes) {
      cm_.add_expert(load, m.layer, e, g_.tiers[m.layer][e], -1);
      cm_.add_expert(load, m.layer, e, t, +1);
    }
    uint64_t mg = 0, mr = 0, ms = 0;
    cm_.layer_memory(load, g_, mg, mr, ms);
    m.dt = cm_.layer_cost(m.layer, load, g_).total_us - time_[m.layer];
    if (!others_gpu) {
      const bool before = saved.n_gpu_pinned + saved.n_gpu_dynamic > 0;
      const bool after = load.n_gpu_pinned + load.n_gpu_dynamic > 0;
      m.dt += (static_cast<double>(after) - static_cast<double>(before)) * cm_.submit_us();
    }
    static_cast<LoadSums&>(load) = saved;
    if (dynamic_touched) load.dynamic_lru = saved_dynamic_;
    if (storage_touched) load.storage_lru = saved_storage_;
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
    // Large layers: per target tier only the k_greedy_candidates hottest experts not yet in
    // it (an upgrade's gain grows with the expert's use); local search later tries them all.
    for (ExpertTier t : k_all_tiers) {
      if (!tier_allowed(cm_, t)) continue;
      uint32_t n = 0;
      for (uint32_t e : order_[l]) {
        if (t == g_.tiers[l][e]) continue;
        if (E > k_pair_swap_max_experts && n++ == k_greedy_candidates) break;
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

  // Each round applies the best move of up to max(1, L/8) layers, best score first, each
  // re-checked against the budget left; a layer's best move is recomputed after it changes.
  void greedy() {
    const uint32_t L = cm_.n_layer();
    std::vector<std::optional<Move>> best(L);
    std::vector<bool> others(L);
    auto refresh = [&](uint32_t l) {
      others[l] = any_gpu_except(l);
      best[l] = best_move(l, others[l]);
    };
    for (uint32_t l = 0; l < L; ++l) refresh(l);
    const size_t batch = std::max<size_t>(1, L / 8);
    for (size_t round = 0; round < 64ull * L * cm_.n_expert(); ++round) {
      std::vector<std::pair<double, uint32_t>> ranked;
      for (uint32_t l = 0; l < L; ++l) {
        if (best[l] && !fits(*best[l])) refresh(l);
        if (best[l]) ranked.push_back({benefit_per_byte(*best[l]), l});
      }
      if (ranked.empty()) break;
      std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      const bool gpu_before = any_gpu_except(L);
      std::vector<uint32_t> changed;
      for (const auto& [score_value, l] : ranked) {
        if (changed.size() == batch) break;
        if (!fits(*best[l])) continue;
        apply(*best[l]);
        changed.push_back(l);
      }
      // Scores depend on the remaining budget and on whether the GPU is in use at all.
      if (any_gpu_except(L) != gpu_before) {
        for (uint32_t l = 0; l < L; ++l) refresh(l);
      } else {
        for (uint32_t l : changed) refresh(l);
      }
    }
  }

  // Within each layer: small layers take the best single move or pair swap each step; large
  // layers apply every improving single move as the scan finds it (first improvement: one
  // O(4E) pass per step instead of one per move). Then at most one layer rewrite per round.
  bool local_moves() {
    bool improved = false;
    const uint32_t E = cm_.n_expert();
    const bool small = E <= k_pair_swap_max_experts;
    for (uint32_t l = 0; l < cm_.n_layer(); ++l) {
      bool again = true;
      bool rewritten = false;
      for (uint32_t iter = 0; again && iter < 4 * E; ++iter) {
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
            if (!small) {
              Move m{l, {{i, ti}}, 0, 0, 0};
              score(m, others);  // moves in layer l leave the other layers as they are
              if (m.dt < -1e-9 && fits(m)) {
                apply(m);
                improved = again = true;
              }
              continue;
            }
            consider(Move{l, {{i, ti}}, 0, 0, 0});
            for (uint32_t j = 0; j < E; ++j) {
              if (j == i) continue;
              for (ExpertTier tj : k_all_tiers) {
                if (tj == g_.tiers[l][j] || !tier_allowed(cm_, tj)) continue;
                consider(Move{l, {{i, ti}, {j, tj}}, 0, 0, 0});
              }
            }
          }
        }
        if (again) continue;
        if (!found && !rewritten) found = rewritten = best_rewrite(l, any_gpu_except(l), best);
        if (found) {
          apply(best);
          improved = again = true;
        }
      }
    }
    return improved;
  }

  // Rewrites of a whole layer in hotness order: the a hottest experts gpu-pinned, the next b
  // gpu-dynamic, the next c ram_cpu, the rest on storage (and dynamic/ram_cpu swapped). These
  // reach placements that need several experts to move at once (e.g. pinned -> dynamic to
  // free the memory for a slot). Counts step over size_steps() in large layers.
  bool best_rewrite(uint32_t l, bool others, Move& best) const {
    const uint32_t E = cm_.n_expert();
    std::vector<uint32_t> counts;
    for (uint32_t x = 0; x <= E; ++x) {
      if (E <= k_pair_swap_max_experts || x <= 4 || x == E || (x & (x - 1)) == 0 || x % 8 == 0) counts.push_back(x);
    }
    const auto& P = prefix_[l];
    const bool gpu_before = loads_[l].n_gpu_pinned + loads_[l].n_gpu_dynamic > 0;
    bool found = false;
    std::array<uint32_t, 3> best_abc{};
    int best_order = -1;
    for (int order = 0; order < 2; ++order) {
      const size_t second = order == 0 ? 1 : 2, third = order == 0 ? 2 : 1;  // k_all_tiers index
      for (uint32_t a : counts) {
        for (uint32_t b : counts) {
          if (a + b > E) break;
          for (uint32_t c : counts) {
            if (a + b + c > E) break;
            if (!cm_.has_gpu() && (a > 0 || (order == 0 ? b : c) > 0)) continue;
            // Scalars first, with empty LRU sums (no misses): a lower bound on the layer
            // time, which rules out most rewrites before their LRU sums are added up.
            LayerLoad load;
            add_sums(load, P[0][a], 1);
            add_sums(load, P[second][a + b], 1);
            add_sums(load, P[second][a], -1);
            add_sums(load, P[third][a + b + c], 1);
            add_sums(load, P[third][a + b], -1);
            add_sums(load, P[3][E], 1);
            add_sums(load, P[3][a + b + c], -1);
            double submit = 0;
            if (!others) {
              const bool gpu_after = load.n_gpu_pinned + load.n_gpu_dynamic > 0;
              submit = (static_cast<double>(gpu_after) - static_cast<double>(gpu_before)) * cm_.submit_us();
            }
            if (cm_.layer_cost(l, load, g_).total_us - time_[l] + submit >= best.dt) continue;
            for (const auto& [t, from, to] : {std::tuple{second, a, a + b}, std::tuple{third, a + b, a + b + c},
                                              std::tuple{size_t{3}, a + b + c, E}}) {
              LruSums* sums = t == 1 ? &load.dynamic_lru : t == 3 ? &load.storage_lru : nullptr;
              if (!sums) continue;
              *sums += t == 1 ? P[t][to].dynamic_lru : P[t][to].storage_lru;
              *sums -= t == 1 ? P[t][from].dynamic_lru : P[t][from].storage_lru;
            }
            const double dt = cm_.layer_cost(l, load, g_).total_us - time_[l] + submit;
            if (dt >= best.dt) continue;
            uint64_t mg = 0, mr = 0, ms = 0;
            cm_.layer_memory(load, g_, mg, mr, ms);
            Move m{l, {}, dt, static_cast<int64_t>(mg) - static_cast<int64_t>(mem_g_[l]),
                   static_cast<int64_t>(mr) - static_cast<int64_t>(mem_r_[l])};
            if (!fits(m)) continue;
            best = std::move(m);
            best_abc = {a, b, c};
            best_order = order;
            found = true;
          }
        }
      }
    }
    if (!found) return false;
    const auto [a, b, c] = best_abc;
    for (uint32_t i = 0; i < E; ++i) {
      const ExpertTier second = best_order == 0 ? ExpertTier::gpu_dynamic : ExpertTier::ram_cpu;
      const ExpertTier third = best_order == 0 ? ExpertTier::ram_cpu : ExpertTier::gpu_dynamic;
      const ExpertTier t = i < a ? ExpertTier::gpu_pinned : i < a + b ? second : i < a + b + c ? third : ExpertTier::storage;
      if (g_.tiers[l][order_[l][i]] != t) best.changes.push_back({order_[l][i], t});
    }
    return !best.changes.empty();
  }

  static void add_sums(LoadSums& x, const LoadSums& o, int sign) {
    const double s = sign;
    x.cpu_us += s * o.cpu_us; x.cpu_bytes += s * o.cpu_bytes; x.gpu_us += s * o.gpu_us; x.gpu_bytes += s * o.gpu_bytes;
    x.dynamic_uses += s * o.dynamic_uses; x.storage_uses += s * o.storage_uses;
    x.n_gpu_pinned += sign * static_cast<int>(o.n_gpu_pinned); x.n_gpu_dynamic += sign * static_cast<int>(o.n_gpu_dynamic);
    x.n_ram_cpu += sign * static_cast<int>(o.n_ram_cpu); x.n_storage += sign * static_cast<int>(o.n_storage);
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
    // The best gains against the cheapest losses: O(L^2) pairs, not O((L E)^2).
    ups.resize(std::min<size_t>(ups.size(), 4ull * L));
    downs.resize(std::min<size_t>(downs.size(), 4ull * L));
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
  mutable std::vector<LayerLoad> loads_;  // score() changes one in place and restores it
  mutable LruSums saved_dynamic_, saved_storage_;
  std::vector<double> time_;
  std::vector<uint64_t> mem_g_, mem_r_;
  uint64_t used_g_ = 0, used_r_ = 0;
  std::vector<std::vector<uint32_t>> order_;
  std::vector<std::array<std::vector<LayerLoad>, 4>> prefix_;
  bool warm_ = false;
};

// Candidate slot and cache sizes: every size in small layers, powers of two in large ones.
std::vector<uint32_t> size_steps(uint32_t n) {
  std::vector<uint32_t> v;
  for (uint32_t x = 1; x < n; ++x) {
    if (n <= 8 || (x & (x - 1)) == 0) v.push_back(x);
  }
  v.push_back(n);
  return v;
}

// Coordinate search over (slots, cache size) indexes into size_steps, starting near 4;
// `quick` runs the starting point only (to screen attention/head choices).
Candidate solve_heuristic(const CostModel& cm, const Limits& lim, Device attn, Device head, bool quick) {
  Candidate best;
  uint64_t fixed_g = 0, fixed_r = 0;
  cm.fixed_memory(attn, head, fixed_g, fixed_r);
  if (fixed_g > lim.gpu || fixed_r > lim.ram) return best;
  const std::vector<uint32_t> steps = size_steps(cm.n_expert());
  const int n = static_cast<int>(steps.size());
  std::vector<double> tried(steps.size() * steps.size(), -1.0);
  // Large instances search with one local-search round per run and polish the winner.
  const bool small = cm.n_expert() <= 8;
  const int rounds = small ? k_local_rounds : 1;
  auto run = [&](int si, int ri) {
    double& memo = tried[static_cast<size_t>(si) * steps.size() + static_cast<size_t>(ri)];
    if (memo >= 0) return memo;
    Placement g;
    g.attention = attn;
    g.output_head = head;
    g.n_dynamic_slots = cm.has_gpu() ? steps[si] : 0;
    g.ram_cache_experts = steps[ri];
    Search search(cm, lim, g, best.token_us < k_inf ? &best.placement.tiers : nullptr);
    if (!search.feasible()) return memo = k_inf;
    search.run(rounds);
    memo = search.token_us();
    if (memo < best.token_us) {
      best.token_us = memo;
      best.placement = search.placement();
    }
    return memo;
  };
  auto polish = [&] {
    if (best.token_us == k_inf || rounds == k_local_rounds) return;
    Search search(cm, lim, best.placement, &best.placement.tiers);
    search.run(k_local_rounds);
    if (search.feasible() && search.token_us() < best.token_us) {
      best.token_us = search.token_us();
      best.placement = search.placement();
    }
  };
  const int start = static_cast<int>(std::find(steps.begin(), steps.end(), std::min(4u, cm.n_expert())) - steps.begin());
  const int s_count = cm.has_gpu() ? n : 1;
  if (quick) {
    if (run(cm.has_gpu() ? start : 0, start) == k_inf) run(cm.has_gpu() ? start : 0, 0);
    polish();
    return best;
  }
  if (small) {  // every slot and cache size
    for (int a = 0; a < s_count; ++a) {
      for (int b = 0; b < n; ++b) run(a, b);
    }
    return best;
  }
  // Larger layers: a sweep of the slot count, then of the cache size, then coordinate steps.
  int si = cm.has_gpu() ? start : 0, ri = start;
  double cur = run(si, ri);
  if (cur == k_inf) cur = run(si, ri = 0);  // the all-storage start needs a cache slot per layer
  for (int a = 0; a < s_count; ++a) {
    if (run(a, ri) < cur - 1e-9) cur = run(si = a, ri);
  }
  // The cache size only acts on storage experts: sweep it when the best placement has some.
  bool any_storage = false;
  for (const auto& layer : best.placement.tiers) {
    any_storage = any_storage || std::find(layer.begin(), layer.end(), ExpertTier::storage) != layer.end();
  }
  for (int b = 0; b < n && any_storage; ++b) {
    if (run(si, b) < cur - 1e-9) cur = run(si, ri = b);
  }
  // A second sweep of the slot count: the best one can shift with the cache size.
  for (int a = 0; a < s_count; ++a) {
    if (run(a, ri) < cur - 1e-9) cur = run(si = a, ri);
  }
  polish();
  return best;
}

// Bytes in the unit that keeps them readable.
std::string mib(double bytes) {
  if (bytes >= 1024.0 * k_mib) return fmt::format("{:.2f} GiB", bytes / (1024.0 * k_mib));
  if (bytes >= k_mib) return fmt::format("{:.1f} MiB", bytes / k_mib);
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

// Why each expert sits where it does: the layer-time change of moving it alone elsewhere.
void explain_experts(const CostModel& cm, Plan& plan) {
  const Placement& pl = plan.placement;
  plan.expert_reasons.assign(cm.n_layer(), std::vector<std::string>(cm.n_expert()));
  Placement globals = pl;
  globals.tiers.clear();  // layer_cost reads the global choices only
  for (uint32_t l = 0; l < cm.n_layer(); ++l) {
    const LayerLoad load = cm.layer_load(l, pl.tiers[l]);
    const double base = cm.layer_cost(l, load, globals).total_us;
    for (uint32_t e = 0; e < cm.n_expert(); ++e) {
      std::string alt;
      for (ExpertTier t : k_all_tiers) {
        if (t == pl.tiers[l][e] || !tier_allowed(cm, t)) continue;
        LayerLoad m = load;
        cm.add_expert(m, l, e, pl.tiers[l][e], -1);
        cm.add_expert(m, l, e, t, +1);
        Placement g = globals;
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
  if (exact && (shape.n_expert > 6 || n_total > 24)) {
    return make_error(ErrorCode::invalid_argument,
                      "the exact solver enumerates 4^n_expert placements per layer and combines layers: "
                      "n_expert {} (at most 6) and {} experts in total (at most 24) are too many",
                      shape.n_expert, n_total);
  }
  std::vector<Device> devices{Device::cpu};
  if (cm.has_gpu()) devices.push_back(Device::gpu);

  Candidate best;
  std::vector<std::string> reasons;
  // Large heuristic instances: screen the attention/head choices with one greedy run each,
  // then search slot and cache sizes for the best one only.
  const bool screen = !exact && n_total > 256;
  std::pair<Device, Device> searched{Device::cpu, Device::cpu};
  std::vector<Candidate> screened;
  if (screen) {
    double t_best = k_inf;
    for (Device attn : devices) {
      for (Device head : devices) {
        screened.push_back(solve_heuristic(cm, lim, attn, head, /*quick=*/true));
        if (screened.back().token_us < t_best) {
          t_best = screened.back().token_us;
          searched = {attn, head};
        }
      }
    }
  }
  size_t combo = 0;
  for (Device attn : devices) {
    for (Device head : devices) {
      const bool quick = screen && std::pair{attn, head} != searched;
      Candidate c = exact   ? solve_exact(cm, lim, attn, head)
                    : quick ? std::move(screened[combo])
                            : solve_heuristic(cm, lim, attn, head, false);
      ++combo;
      reasons.push_back(c.token_us < k_inf
                            ? fmt::format("attention on {}, output head on {}: best found {:.2f} us/token{}",
                                          device_name(attn), device_name(head), c.token_us,
                                          quick ? " (screened with 4 slots and 4 cache slots per layer)" : "")
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
                      "no placement fits the budget (gpu {}, ram {}): with attention and output head "
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
  // A layer whose LRU holds its whole tier never misses (cost_model.h), so its experts may as
  // well be resident: gpu-dynamic experts with a slot each become gpu-pinned, storage experts
  // with a cache slot each ram_cpu. Same time, no more memory; it only breaks the tie the
  // search leaves between the two, in favour of the plan that says what happens.
  {
    Placement resident = plan.placement;
    for (auto& layer : resident.tiers) {
      const auto n_dynamic = static_cast<uint32_t>(std::count(layer.begin(), layer.end(), ExpertTier::gpu_dynamic));
      const auto n_storage = static_cast<uint32_t>(std::count(layer.begin(), layer.end(), ExpertTier::storage));
      const bool pin = n_dynamic > 0 && resident.n_dynamic_slots >= n_dynamic;
      const bool keep = n_storage > 0 && resident.ram_cache_experts >= n_storage;
      for (ExpertTier& t : layer) {
        if (pin && t == ExpertTier::gpu_dynamic) t = ExpertTier::gpu_pinned;
        if (keep && t == ExpertTier::storage) t = ExpertTier::ram_cpu;
      }
    }
    auto before = cm.evaluate(plan.placement), after = cm.evaluate(resident);
    if (before.ok() && after.ok() && after->token_us <= before->token_us &&
        after->memory.gpu_bytes <= before->memory.gpu_bytes && after->memory.ram_bytes <= before->memory.ram_bytes) {
      plan.placement = std::move(resident);
    }
  }
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
