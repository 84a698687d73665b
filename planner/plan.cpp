#include "planner/plan.h"

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

std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "gpu"; }

std::string_view expert_tier_name(ExpertTier t) {
  switch (t) {
    case ExpertTier::gpu_pinned: return "gpu (pinned)";
    case ExpertTier::gpu_dynamic: return "gpu (dynamic)";
    case ExpertTier::ram_cpu: return "ram_cpu";
    case ExpertTier::storage: return "storage";
  }
  return "?";
}

namespace {

constexpr double k_inf = std::numeric_limits<double>::max();
constexpr uint64_t k_max_layers = 4096;
constexpr uint64_t k_max_experts = 1024;

const char* tier_json(ExpertTier t) {
  return runs_on_gpu(t) ? "gpu" : (t == ExpertTier::ram_cpu ? "ram_cpu" : "storage");
}
bool tier_pinned(ExpertTier t) { return t == ExpertTier::gpu_pinned || t == ExpertTier::ram_cpu; }

Device read_device(Reader& r, const json& obj, const char* key, const std::string& path) {
  const std::string s = r.str(obj, key, path);
  if (r.ok() && s != "cpu" && s != "gpu") r.fail(sub(path, key), "must be \"cpu\" or \"gpu\", is \"" + s + "\"");
  return s == "gpu" ? Device::gpu : Device::cpu;
}

// The LayerCost fields in JSON order.
struct CostField {
  const char* name;
  double LayerCost::*member;
};
constexpr CostField k_cost_fields[] = {
    {"attention_us", &LayerCost::attention_us},   {"cpu_experts_us", &LayerCost::cpu_experts_us},
    {"gpu_experts_us", &LayerCost::gpu_experts_us}, {"upload_us", &LayerCost::upload_us},
    {"storage_us", &LayerCost::storage_us},       {"sync_us", &LayerCost::sync_us},
    {"bandwidth_us", &LayerCost::bandwidth_us},   {"total_us", &LayerCost::total_us},
    {"upload_bytes", &LayerCost::upload_bytes},   {"storage_bytes", &LayerCost::storage_bytes},
    {"dynamic_accesses", &LayerCost::dynamic_accesses},
    {"dynamic_misses", &LayerCost::dynamic_misses},
    {"storage_accesses", &LayerCost::storage_accesses},
    {"storage_misses", &LayerCost::storage_misses},
};

}  // namespace

Result<Plan> plan_from_json(std::string_view text, std::string_view display_name) {
  Reader r{std::string(display_name)};
  json root;
  if (!r.parse(text, root) || !r.check_header(root, Plan::k_schema_version)) return r.status();
  r.only_keys(root, "", {"schema_version", "model_name", "model_hash", "hardware_name", "objective",
                         "solver", "shape", "attention", "output_head", "n_dynamic_slots",
                         "ram_cache_experts", "expert_bytes", "predicted", "memory", "reasons", "layers"});
  Plan p;
  p.model_name = r.str(root, "model_name", "");
  p.model_hash = r.str(root, "model_hash", "");
  p.hardware_name = r.str(root, "hardware_name", "");
  const std::string objective = r.str(root, "objective", "");
  if (r.ok()) {
    if (auto o = objective_from_name(objective)) p.objective = *o;
    else r.fail("objective", "must be \"decode\" or \"prefill\", is \"" + objective + "\"");
  }
  p.solver = r.str(root, "solver", "");
  const json* shape = r.field(root, "shape", "");
  if (r.is_object(shape, "shape")) {
    r.only_keys(*shape, "shape", {"n_layer", "n_expert"});
    p.n_layer = static_cast<uint32_t>(r.u64(*shape, "n_layer", "shape", 1, k_max_layers));
    p.n_expert = static_cast<uint32_t>(r.u64(*shape, "n_expert", "shape", 1, k_max_experts));
  }
  p.placement.attention = read_device(r, root, "attention", "");
  p.placement.output_head = read_device(r, root, "output_head", "");
  p.placement.n_dynamic_slots = static_cast<uint32_t>(r.u64(root, "n_dynamic_slots", "", 0, p.n_expert));
  p.placement.ram_cache_experts = static_cast<uint32_t>(r.u64(root, "ram_cache_experts", "", 0, p.n_expert));
  p.expert_bytes = r.u64(root, "expert_bytes", "", 1);

  const json* pred = r.field(root, "predicted", "");
  if (r.is_object(pred, "predicted")) {
    r.only_keys(*pred, "predicted", {"token_us", "tokens_per_s", "head_us", "submit_us",
                                     "upload_bytes_per_token", "storage_bytes_per_token",
                                     "dynamic_hit_rate", "ram_cache_hit_rate", "layers"});
    Prediction& q = p.predicted;
    q.token_us = r.num(*pred, "token_us", "predicted", 0, k_inf);
    q.tokens_per_s = r.num(*pred, "tokens_per_s", "predicted", 0, k_inf);
    q.head_us = r.num(*pred, "head_us", "predicted", 0, k_inf);
    q.submit_us = r.num(*pred, "submit_us", "predicted", 0, k_inf);
    q.upload_bytes_per_token = r.num(*pred, "upload_bytes_per_token", "predicted", 0, k_inf);
    q.storage_bytes_per_token = r.num(*pred, "storage_bytes_per_token", "predicted", 0, k_inf);
    q.dynamic_hit_rate = r.num(*pred, "dynamic_hit_rate", "predicted", 0, 1);
    q.ram_cache_hit_rate = r.num(*pred, "ram_cache_hit_rate", "predicted", 0, 1);
    const json* layers = r.field(*pred, "layers", "predicted");
    if (r.is_array(layers, "predicted.layers", p.n_layer)) {
      for (size_t l = 0; l < layers->size() && r.ok(); ++l) {
        const std::string lp = at("predicted.layers", l);
        LayerCost c;
        for (const auto& f : k_cost_fields) c.*(f.member) = r.num((*layers)[l], f.name, lp, 0, k_inf);
        q.layers.push_back(c);
      }
    }
  }
  const json* mem = r.field(root, "memory", "");
  if (r.is_object(mem, "memory")) {
    r.only_keys(*mem, "memory", {"gpu_bytes", "ram_bytes", "storage_bytes"});
    p.predicted.memory.gpu_bytes = r.u64(*mem, "gpu_bytes", "memory");
    p.predicted.memory.ram_bytes = r.u64(*mem, "ram_bytes", "memory");
    p.predicted.memory.storage_bytes = r.u64(*mem, "storage_bytes", "memory");
  }
  const json* reasons = r.field(root, "reasons", "");
  if (r.is_array(reasons, "reasons")) {
    for (size_t i = 0; i < reasons->size() && r.ok(); ++i) {
      if (!(*reasons)[i].is_string()) r.fail(at("reasons", i), "must be a string");
      else p.reasons.push_back((*reasons)[i].get<std::string>());
    }
  }
  const json* layers = r.field(root, "layers", "");
  if (r.ok() && r.is_array(layers, "layers", p.n_layer)) {
    for (size_t l = 0; l < layers->size() && r.ok(); ++l) {
      const std::string lp = at("layers", l);
      const json& lj = (*layers)[l];
      if (!r.is_object(&lj, lp)) break;
      r.only_keys(lj, lp, {"experts"});
      const json* ex = r.field(lj, "experts", lp);
      if (!r.is_array(ex, sub(lp, "experts"), p.n_expert)) break;
      std::vector<ExpertTier> tiers;
      std::vector<std::string> why;
      for (size_t e = 0; e < ex->size() && r.ok(); ++e) {
        const std::string ep = at(sub(lp, "experts"), e);
        const json& ej = (*ex)[e];
        if (!r.is_object(&ej, ep)) break;
        r.only_keys(ej, ep, {"tier", "pinned", "reason"});
        const std::string tier = r.str(ej, "tier", ep);
        const bool pinned = r.boolean(ej, "pinned", ep);
        why.push_back(r.str(ej, "reason", ep));
        if (!r.ok()) break;
        ExpertTier t = ExpertTier::storage;
        if (tier == "gpu") t = pinned ? ExpertTier::gpu_pinned : ExpertTier::gpu_dynamic;
        else if (tier == "ram_cpu" && pinned) t = ExpertTier::ram_cpu;
        else if (tier == "storage" && !pinned) t = ExpertTier::storage;
        else if (tier == "ram_cpu" || tier == "storage") {
          r.fail(sub(ep, "pinned"), tier == "ram_cpu" ? "must be true for tier ram_cpu" : "must be false for tier storage");
        } else {
          r.fail(sub(ep, "tier"), "must be \"gpu\", \"ram_cpu\" or \"storage\", is \"" + tier + "\"");
        }
        tiers.push_back(t);
      }
      p.placement.tiers.push_back(std::move(tiers));
      p.expert_reasons.push_back(std::move(why));
    }
  }
  if (!r.ok()) return r.status();
  return p;
}

std::string plan_to_json(const Plan& p) {
  json root;
  root["schema_version"] = Plan::k_schema_version;
  root["model_name"] = p.model_name;
  root["model_hash"] = p.model_hash;
  root["hardware_name"] = p.hardware_name;
  root["objective"] = std::string(objective_name(p.objective));
  root["solver"] = p.solver;
  root["shape"] = {{"n_layer", p.n_layer}, {"n_expert", p.n_expert}};
  root["attention"] = std::string(device_name(p.placement.attention));
  root["output_head"] = std::string(device_name(p.placement.output_head));
  root["n_dynamic_slots"] = p.placement.n_dynamic_slots;
  root["ram_cache_experts"] = p.placement.ram_cache_experts;
  root["expert_bytes"] = p.expert_bytes;
  const Prediction& q = p.predicted;
  json pred = {{"token_us", q.token_us},
               {"tokens_per_s", q.tokens_per_s},
               {"head_us", q.head_us},
               {"submit_us", q.submit_us},
               {"upload_bytes_per_token", q.upload_bytes_per_token},
               {"storage_bytes_per_token", q.storage_bytes_per_token},
               {"dynamic_hit_rate", q.dynamic_hit_rate},
               {"ram_cache_hit_rate", q.ram_cache_hit_rate}};
  pred["layers"] = json::array();
  for (const auto& c : q.layers) {
    json lj = json::object();
    for (const auto& f : k_cost_fields) lj[f.name] = c.*(f.member);
    pred["layers"].push_back(std::move(lj));
  }
  root["predicted"] = std::move(pred);
  root["memory"] = {{"gpu_bytes", q.memory.gpu_bytes},
                    {"ram_bytes", q.memory.ram_bytes},
                    {"storage_bytes", q.memory.storage_bytes}};
  root["reasons"] = p.reasons;
  root["layers"] = json::array();
  for (size_t l = 0; l < p.placement.tiers.size(); ++l) {
    json ex = json::array();
    for (size_t e = 0; e < p.placement.tiers[l].size(); ++e) {
      const ExpertTier t = p.placement.tiers[l][e];
      const std::string why = l < p.expert_reasons.size() && e < p.expert_reasons[l].size()
                                  ? p.expert_reasons[l][e] : std::string();
      ex.push_back({{"tier", tier_json(t)}, {"pinned", tier_pinned(t)}, {"reason", why}});
    }
    root["layers"].push_back({{"experts", std::move(ex)}});
  }
  return root.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Plan> load_plan(const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return plan_from_json(text, path.string());
}

Status save_plan(const Plan& plan, const std::filesystem::path& path) {
  return write_text_file(path, plan_to_json(plan));
}

std::string plan_summary(const Plan& p, bool explain) {
  const Prediction& q = p.predicted;
  const double mib = 1024.0 * 1024.0;
  size_t count[4] = {0, 0, 0, 0};
  for (const auto& layer : p.placement.tiers) {
    for (ExpertTier t : layer) ++count[static_cast<size_t>(t)];
  }
  std::string s = fmt::format(
      "plan for {} ({}) on {}, objective {}, solver {}\n"
      "  predicted: {:.2f} tokens/s ({:.1f} us/token: layers {:.1f}, output head {:.1f}, submit {:.1f})\n"
      "  attention on {}, output head on {}; {} dynamic GPU slots and {} RAM cache slots per layer\n"
      "  experts: {} gpu pinned, {} gpu dynamic, {} ram_cpu, {} storage ({:.2f} MiB each)\n"
      "  memory: gpu {:.1f} MiB, ram {:.1f} MiB, storage {:.1f} MiB\n"
      "  per token: upload {:.2f} MiB, storage reads {:.2f} MiB; hit rates: dynamic slots {:.3f}, ram cache {:.3f}\n",
      p.model_name, p.model_hash, p.hardware_name, objective_name(p.objective), p.solver,
      q.tokens_per_s, q.token_us, q.token_us - q.head_us - q.submit_us, q.head_us, q.submit_us,
      device_name(p.placement.attention), device_name(p.placement.output_head),
      p.placement.n_dynamic_slots, p.placement.ram_cache_experts, count[0], count[1], count[2],
      count[3], static_cast<double>(p.expert_bytes) / mib,
      static_cast<double>(q.memory.gpu_bytes) / mib, static_cast<double>(q.memory.ram_bytes) / mib,
      static_cast<double>(q.memory.storage_bytes) / mib, q.upload_bytes_per_token / mib,
      q.storage_bytes_per_token / mib, q.dynamic_hit_rate, q.ram_cache_hit_rate);
  if (!explain) return s;
  s += "reasons:\n";
  for (const auto& r : p.reasons) s += "  " + r + "\n";
  for (size_t l = 0; l < p.placement.tiers.size(); ++l) {
    const LayerCost& c = l < q.layers.size() ? q.layers[l] : LayerCost{};
    s += fmt::format(
        "layer {}: {:.1f} us (attention {:.1f}, cpu experts {:.1f}, gpu experts {:.1f}, upload {:.1f}, "
        "storage {:.1f}, sync {:.1f}, shared bus {:.1f})\n",
        l, c.total_us, c.attention_us, c.cpu_experts_us, c.gpu_experts_us, c.upload_us, c.storage_us,
        c.sync_us, c.bandwidth_us);
    for (size_t e = 0; e < p.placement.tiers[l].size(); ++e) {
      const std::string why = l < p.expert_reasons.size() && e < p.expert_reasons[l].size()
                                  ? p.expert_reasons[l][e] : std::string();
      s += fmt::format("  expert {:3}: {:14} {}\n", e, expert_tier_name(p.placement.tiers[l][e]), why);
    }
  }
  return s;
}

}  // namespace tandem
