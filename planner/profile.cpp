#include "planner/profile.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "planner/json_fields.h"
#include "planner/text_file.h"

namespace tandem {

using planner_json::at;
using planner_json::json;
using planner_json::Reader;
using planner_json::read_text_file;
using planner_json::write_text_file;
using planner_json::sub;

ProfileShape profile_shape(const ModelShape& s) {
  return {s.n_layer, s.n_expert, s.n_expert_used, s.n_embd, s.n_ff_exp};
}

double Profile::activation_probability(uint32_t layer, uint32_t expert) const {
  if (n_tokens == 0) return 0;
  return static_cast<double>(layers[layer].experts[expert].activation_count) /
         static_cast<double>(n_tokens);
}

namespace {

// Sanity limits that keep a hostile file from allocating unbounded memory.
constexpr uint64_t k_max_layers = 4096;
constexpr uint64_t k_max_experts = 1024;

}  // namespace

Result<Profile> profile_from_json(std::string_view text, std::string_view display_name) {
  Reader r{std::string(display_name)};
  json root;
  if (!r.parse(text, root) || !r.check_header(root, Profile::k_schema_version)) return r.status();
  r.only_keys(root, "", {"schema_version", "model_name", "model_hash", "n_tokens", "shape", "layers"});
  Profile p;
  p.model_name = r.str(root, "model_name", "");
  p.model_hash = r.str(root, "model_hash", "");
  p.n_tokens = r.u64(root, "n_tokens", "");
  const json* shape = r.field(root, "shape", "");
  if (r.is_object(shape, "shape")) {
    r.only_keys(*shape, "shape", {"n_layer", "n_expert", "n_expert_used", "n_embd", "n_ff_exp"});
    p.shape.n_layer = static_cast<uint32_t>(r.u64(*shape, "n_layer", "shape", 1, k_max_layers));
    p.shape.n_expert = static_cast<uint32_t>(r.u64(*shape, "n_expert", "shape", 1, k_max_experts));
    p.shape.n_expert_used =
        static_cast<uint32_t>(r.u64(*shape, "n_expert_used", "shape", 1, p.shape.n_expert));
    p.shape.n_embd = static_cast<uint32_t>(r.u64(*shape, "n_embd", "shape", 1, 1u << 20));
    p.shape.n_ff_exp = static_cast<uint32_t>(r.u64(*shape, "n_ff_exp", "shape", 1, 1u << 20));
  }
  const json* layers = r.field(root, "layers", "");
  const uint32_t ne = p.shape.n_expert;
  if (r.ok() && r.is_array(layers, "layers", p.shape.n_layer)) {
    p.layers.resize(p.shape.n_layer);
    for (size_t l = 0; l < layers->size() && r.ok(); ++l) {
      const std::string lp = at("layers", l);
      const json& lj = (*layers)[l];
      if (!r.is_object(&lj, lp)) break;
      r.only_keys(lj, lp, {"lru_hit_rate", "coactivation", "experts"});
      LayerProfile& L = p.layers[l];
      const json* lru = r.field(lj, "lru_hit_rate", lp);
      if (r.is_array(lru, sub(lp, "lru_hit_rate"), ne + 1)) {
        for (size_t c = 0; c <= ne; ++c) {
          L.lru_hit_rate.push_back(r.num_value((*lru)[c], at(sub(lp, "lru_hit_rate"), c), 0, 1));
          if (c > 0 && r.ok() && L.lru_hit_rate[c] < L.lru_hit_rate[c - 1]) {
            r.fail(at(sub(lp, "lru_hit_rate"), c), "must not be below the rate for a smaller cache");
          }
        }
        if (r.ok() && L.lru_hit_rate[0] != 0) r.fail(at(sub(lp, "lru_hit_rate"), 0), "must be 0");
      }
      const json* experts = r.field(lj, "experts", lp);
      if (r.is_array(experts, sub(lp, "experts"), ne)) {
        for (size_t e = 0; e < ne && r.ok(); ++e) {
          const std::string ep = at(sub(lp, "experts"), e);
          const json& ej = (*experts)[e];
          if (!r.is_object(&ej, ep)) break;
          r.only_keys(ej, ep, {"activation_count", "weight_mass", "gate_observations",
                               "gate_activity", "neuron_activity_deciles"});
          ExpertProfile x;
          x.activation_count = r.u64(ej, "activation_count", ep, 0, p.n_tokens);
          x.weight_mass = r.num(ej, "weight_mass", ep, 0, static_cast<double>(x.activation_count) + 1e-6);
          x.gate_observations = r.u64(ej, "gate_observations", ep);
          x.gate_activity = r.num(ej, "gate_activity", ep, 0, 1);
          const json* dec = r.field(ej, "neuron_activity_deciles", ep);
          if (r.is_array(dec, sub(ep, "neuron_activity_deciles"), 11)) {
            for (size_t i = 0; i < 11; ++i) {
              x.neuron_activity_deciles[i] =
                  r.num_value((*dec)[i], at(sub(ep, "neuron_activity_deciles"), i), 0, 1);
              if (i > 0 && r.ok() && x.neuron_activity_deciles[i] < x.neuron_activity_deciles[i - 1]) {
                r.fail(at(sub(ep, "neuron_activity_deciles"), i), "must not decrease");
              }
            }
          }
          L.experts.push_back(x);
        }
      }
      const json* co = r.field(lj, "coactivation", lp);
      const std::string cp = sub(lp, "coactivation");
      if (r.is_array(co, cp, static_cast<size_t>(ne) * ne)) {
        L.coactivation.resize(static_cast<size_t>(ne) * ne);
        for (size_t i = 0; i < L.coactivation.size() && r.ok(); ++i) {
          L.coactivation[i] = r.u64_value((*co)[i], at(cp, i), 0, p.n_tokens);
        }
        for (size_t a = 0; a < ne && r.ok(); ++a) {
          if (L.coactivation[a * ne + a] != L.experts[a].activation_count) {
            r.fail(at(cp, a * ne + a), fmt::format("(diagonal) must equal experts[{}].activation_count", a));
          }
          for (size_t b = 0; b < a && r.ok(); ++b) {
            if (L.coactivation[a * ne + b] != L.coactivation[b * ne + a]) {
              r.fail(at(cp, a * ne + b), fmt::format("must equal element {} (symmetric)", b * ne + a));
            }
          }
        }
      }
    }
  }
  if (!r.ok()) return r.status();
  return p;
}

std::string profile_to_json(const Profile& p) {
  json root;
  root["schema_version"] = Profile::k_schema_version;
  root["model_name"] = p.model_name;
  root["model_hash"] = p.model_hash;
  root["n_tokens"] = p.n_tokens;
  root["shape"] = {{"n_layer", p.shape.n_layer},
                   {"n_expert", p.shape.n_expert},
                   {"n_expert_used", p.shape.n_expert_used},
                   {"n_embd", p.shape.n_embd},
                   {"n_ff_exp", p.shape.n_ff_exp}};
  root["layers"] = json::array();
  for (const auto& L : p.layers) {
    json lj;
    lj["lru_hit_rate"] = L.lru_hit_rate;
    lj["coactivation"] = L.coactivation;
    lj["experts"] = json::array();
    for (const auto& x : L.experts) {
      lj["experts"].push_back({{"activation_count", x.activation_count},
                               {"weight_mass", x.weight_mass},
                               {"gate_observations", x.gate_observations},
                               {"gate_activity", x.gate_activity},
                               {"neuron_activity_deciles", x.neuron_activity_deciles}});
    }
    root["layers"].push_back(std::move(lj));
  }
  return root.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Profile> load_profile(const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return profile_from_json(text, path.string());
}

Status save_profile(const Profile& profile, const std::filesystem::path& path) {
  return write_text_file(path, profile_to_json(profile));
}

ProfileBuilder::ProfileBuilder(std::string model_name, std::string model_hash, ProfileShape shape)
    : shape_(shape), model_name_(std::move(model_name)), model_hash_(std::move(model_hash)) {
  const size_t ne = shape.n_expert;
  layers_.resize(shape.n_layer);
  for (auto& L : layers_) {
    L.count.assign(ne, 0);
    L.mass.assign(ne, 0);
    L.coactivation.assign(ne * ne, 0);
    L.distance_hist.assign(ne + 1, 0);
    L.gate_obs.assign(ne, 0);
    L.neuron_active.assign(ne * shape.n_ff_exp, 0);
  }
}

Status ProfileBuilder::add_routing(uint32_t layer, uint64_t token, std::span<const int32_t> experts,
                                   std::span<const float> weights) {
  if (layer >= shape_.n_layer) {
    return make_error(ErrorCode::invalid_argument, "routing event: layer {} out of range (n_layer {})",
                      layer, shape_.n_layer);
  }
  if (experts.size() != weights.size() || experts.size() > shape_.n_expert_used) {
    return make_error(ErrorCode::invalid_argument,
                      "routing event layer {} token {}: {} experts and {} weights (n_expert_used {})",
                      layer, token, experts.size(), weights.size(), shape_.n_expert_used);
  }
  LayerState& L = layers_[layer];
  if (L.n_tokens > 0 && token <= L.last_token) {
    return make_error(ErrorCode::invalid_argument,
                      "routing event layer {}: token {} does not follow token {}", layer, token,
                      L.last_token);
  }
  const int32_t ne = static_cast<int32_t>(shape_.n_expert);
  for (size_t i = 0; i < experts.size(); ++i) {
    if (experts[i] < 0 || experts[i] >= ne) {
      return make_error(ErrorCode::invalid_argument,
                        "routing event layer {} token {}: expert id {} out of range (n_expert {})",
                        layer, token, experts[i], ne);
    }
    if (!std::isfinite(weights[i]) || weights[i] < 0) {
      return make_error(ErrorCode::invalid_argument,
                        "routing event layer {} token {}: weight {} of expert {} is not finite and >= 0",
                        layer, token, weights[i], experts[i]);
    }
    for (size_t j = 0; j < i; ++j) {
      if (experts[j] == experts[i]) {
        return make_error(ErrorCode::invalid_argument,
                          "routing event layer {} token {}: expert {} selected twice", layer, token,
                          experts[i]);
      }
    }
  }
  L.last_token = token;
  ++L.n_tokens;
  for (size_t i = 0; i < experts.size(); ++i) {
    const int32_t e = experts[i];
    ++L.count[e];
    L.mass[e] += weights[i];
    for (size_t j = 0; j < experts.size(); ++j) ++L.coactivation[static_cast<size_t>(e) * ne + experts[j]];
    // Stack distance: e's depth in the LRU stack before this access. An LRU of c entries
    // holds exactly the top c of the stack (inclusion), so it hits iff depth < c.
    auto it = std::find(L.lru_stack.begin(), L.lru_stack.end(), e);
    if (it == L.lru_stack.end()) {
      ++L.distance_hist[ne];
      L.lru_stack.push_back(e);
      std::rotate(L.lru_stack.begin(), L.lru_stack.end() - 1, L.lru_stack.end());
    } else {
      ++L.distance_hist[static_cast<size_t>(it - L.lru_stack.begin())];
      std::rotate(L.lru_stack.begin(), it, it + 1);
    }
    ++L.n_accesses;
  }
  return Status::success();
}

Status ProfileBuilder::add_gate_counts(uint32_t layer, uint32_t expert,
                                       std::span<const uint32_t> active_counts,
                                       uint32_t n_observations) {
  if (layer >= shape_.n_layer || expert >= shape_.n_expert) {
    return make_error(ErrorCode::invalid_argument, "gate event: layer {} expert {} out of range ({} x {})",
                      layer, expert, shape_.n_layer, shape_.n_expert);
  }
  if (active_counts.size() != shape_.n_ff_exp) {
    return make_error(ErrorCode::invalid_argument, "gate event layer {} expert {}: {} counts, n_ff_exp is {}",
                      layer, expert, active_counts.size(), shape_.n_ff_exp);
  }
  for (size_t j = 0; j < active_counts.size(); ++j) {
    if (active_counts[j] > n_observations) {
      return make_error(ErrorCode::invalid_argument,
                        "gate event layer {} expert {}: neuron {} active {} times in {} observations",
                        layer, expert, j, active_counts[j], n_observations);
    }
  }
  LayerState& L = layers_[layer];
  L.gate_obs[expert] += n_observations;
  uint64_t* acc = &L.neuron_active[static_cast<size_t>(expert) * shape_.n_ff_exp];
  for (size_t j = 0; j < active_counts.size(); ++j) acc[j] += active_counts[j];
  return Status::success();
}

Status ProfileBuilder::add_gate_mask(uint32_t layer, uint32_t expert, std::span<const uint64_t> mask) {
  if (layer >= shape_.n_layer || expert >= shape_.n_expert) {
    return make_error(ErrorCode::invalid_argument, "gate event: layer {} expert {} out of range ({} x {})",
                      layer, expert, shape_.n_layer, shape_.n_expert);
  }
  const size_t n_ff = shape_.n_ff_exp;
  const size_t words = (n_ff + 63) / 64;
  if (mask.size() != words) {
    return make_error(ErrorCode::invalid_argument, "gate event layer {} expert {}: {} mask words, need {}",
                      layer, expert, mask.size(), words);
  }
  if (n_ff % 64 != 0 && (mask[words - 1] >> (n_ff % 64)) != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "gate event layer {} expert {}: mask bits set past n_ff_exp {}", layer, expert, n_ff);
  }
  LayerState& L = layers_[layer];
  L.gate_obs[expert] += 1;
  uint64_t* acc = &L.neuron_active[expert * n_ff];
  for (size_t w = 0; w < words; ++w) {
    for (uint64_t bits = mask[w]; bits != 0; bits &= bits - 1) {
      acc[w * 64 + static_cast<size_t>(std::countr_zero(bits))] += 1;
    }
  }
  return Status::success();
}

Profile ProfileBuilder::finish() const {
  Profile p;
  p.model_name = model_name_;
  p.model_hash = model_hash_;
  p.shape = shape_;
  const size_t ne = shape_.n_expert;
  const size_t n_ff = shape_.n_ff_exp;
  for (const auto& L : layers_) p.n_tokens = std::max(p.n_tokens, L.n_tokens);
  for (const auto& L : layers_) {
    LayerProfile out;
    out.coactivation = L.coactivation;
    out.lru_hit_rate.assign(ne + 1, 0.0);
    uint64_t hits = 0;
    for (size_t c = 1; c <= ne; ++c) {
      hits += L.distance_hist[c - 1];
      out.lru_hit_rate[c] = L.n_accesses ? static_cast<double>(hits) / static_cast<double>(L.n_accesses) : 0.0;
    }
    std::vector<double> rate(n_ff);
    for (size_t e = 0; e < ne; ++e) {
      ExpertProfile x;
      x.activation_count = L.count[e];
      x.weight_mass = L.mass[e];
      x.gate_observations = L.gate_obs[e];
      if (x.gate_observations > 0 && n_ff > 0) {
        uint64_t active = 0;
        for (size_t j = 0; j < n_ff; ++j) {
          active += L.neuron_active[e * n_ff + j];
          rate[j] = static_cast<double>(L.neuron_active[e * n_ff + j]) /
                    static_cast<double>(x.gate_observations);
        }
        x.gate_activity = static_cast<double>(active) /
                          (static_cast<double>(x.gate_observations) * static_cast<double>(n_ff));
        std::sort(rate.begin(), rate.end());
        // Nearest-rank percentiles: decile i is the value at rank round(i/10 * (n-1)).
        for (size_t i = 0; i <= 10; ++i) {
          const size_t idx = static_cast<size_t>(std::lround(static_cast<double>(i) * static_cast<double>(n_ff - 1) / 10.0));
          x.neuron_activity_deciles[i] = rate[idx];
        }
      }
      out.experts.push_back(x);
    }
    p.layers.push_back(std::move(out));
  }
  return p;
}

}  // namespace tandem
