#include "planner/simulate.h"

#include <algorithm>

#include "planner/cost_model.h"
#include "planner/json_fields.h"
#include "planner/text_file.h"

namespace tandem {

using planner_json::at;
using planner_json::json;
using planner_json::Reader;
using planner_json::read_text_file;
using planner_json::write_text_file;

Result<RoutingTrace> routing_trace_from_json(std::string_view text, std::string_view display_name) {
  Reader r{std::string(display_name)};
  json root;
  if (!r.parse(text, root) || !r.check_header(root, RoutingTrace::k_schema_version)) return r.status();
  r.only_keys(root, "", {"schema_version", "model_hash", "n_layer", "n_expert", "tokens"});
  RoutingTrace t;
  t.model_hash = r.str(root, "model_hash", "");
  t.n_layer = static_cast<uint32_t>(r.u64(root, "n_layer", "", 1, 4096));
  t.n_expert = static_cast<uint32_t>(r.u64(root, "n_expert", "", 1, 1024));
  const json* tokens = r.field(root, "tokens", "");
  if (r.is_array(tokens, "tokens")) {
    t.tokens.reserve(tokens->size());
    for (size_t i = 0; i < tokens->size() && r.ok(); ++i) {
      const std::string tp = at("tokens", i);
      const json& tj = (*tokens)[i];
      if (!r.is_array(&tj, tp, t.n_layer)) break;
      std::vector<std::vector<int32_t>> layers(t.n_layer);
      for (size_t l = 0; l < t.n_layer && r.ok(); ++l) {
        const std::string lp = at(tp, l);
        if (!r.is_array(&tj[l], lp)) break;
        if (tj[l].size() > t.n_expert) {
          r.fail(lp, "has more ids than n_expert");
          break;
        }
        for (size_t k = 0; k < tj[l].size() && r.ok(); ++k) {
          const auto id = static_cast<int32_t>(r.u64_value(tj[l][k], at(lp, k), 0, t.n_expert - 1));
          if (r.ok() && std::find(layers[l].begin(), layers[l].end(), id) != layers[l].end()) {
            r.fail(at(lp, k), "repeats expert " + std::to_string(id));
          }
          layers[l].push_back(id);
        }
      }
      t.tokens.push_back(std::move(layers));
    }
  }
  if (!r.ok()) return r.status();
  return t;
}

std::string routing_trace_to_json(const RoutingTrace& t) {
  json root;
  root["schema_version"] = RoutingTrace::k_schema_version;
  root["model_hash"] = t.model_hash;
  root["n_layer"] = t.n_layer;
  root["n_expert"] = t.n_expert;
  root["tokens"] = t.tokens;
  return root.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<RoutingTrace> load_routing_trace(const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return routing_trace_from_json(text, path.string());
}

Status save_routing_trace(const RoutingTrace& trace, const std::filesystem::path& path) {
  return write_text_file(path, routing_trace_to_json(trace));
}

namespace {

// An LRU of `capacity` experts; access() says whether it hit.
class Lru {
 public:
  explicit Lru(uint32_t capacity) : capacity_(capacity) {}
  bool access(int32_t e) {
    auto it = std::find(items_.begin(), items_.end(), e);
    const bool hit = it != items_.end();
    if (hit) {
      std::rotate(items_.begin(), it, it + 1);
    } else {
      if (items_.size() == capacity_) items_.pop_back();
      items_.push_back(e);
      std::rotate(items_.begin(), items_.end() - 1, items_.end());
    }
    return hit;
  }

 private:
  uint32_t capacity_;
  std::vector<int32_t> items_;  // most recent first
};

}  // namespace

Result<SimulationResult> simulate(const RoutingTrace& trace, const Plan& plan, const HardwareProfile& hw,
                                  const SimulateOptions& options) {
  if (trace.n_layer != plan.n_layer || trace.n_expert != plan.n_expert) {
    return make_error(ErrorCode::invalid_argument,
                      "trace shape (n_layer {}, n_expert {}) differs from the plan's ({}, {})", trace.n_layer,
                      trace.n_expert, plan.n_layer, plan.n_expert);
  }
  if (!trace.model_hash.empty() && !plan.model_hash.empty() && trace.model_hash != plan.model_hash) {
    return make_error(ErrorCode::invalid_argument, "trace is of model {} but the plan is for model {}",
                      trace.model_hash, plan.model_hash);
  }
  if (trace.tokens.size() <= options.warmup_tokens) {
    return make_error(ErrorCode::invalid_argument, "trace has {} tokens: none left after {} warm-up tokens",
                      trace.tokens.size(), options.warmup_tokens);
  }
  const Placement& pl = plan.placement;
  if (pl.tiers.size() != plan.n_layer || plan.predicted.layers.size() != plan.n_layer) {
    return make_error(ErrorCode::invalid_argument, "plan has {} layer placements and {} layer predictions for {} layers",
                      pl.tiers.size(), plan.predicted.layers.size(), plan.n_layer);
  }
  bool uses_gpu = pl.attention == Device::gpu || pl.output_head == Device::gpu;
  for (const auto& layer : pl.tiers) {
    if (layer.size() != plan.n_expert) {
      return make_error(ErrorCode::invalid_argument, "plan layer has {} experts, n_expert is {}", layer.size(),
                        plan.n_expert);
    }
    for (ExpertTier t : layer) uses_gpu = uses_gpu || runs_on_gpu(t);
  }
  const GpuProfile* gpu = options.gpu_index < hw.gpus.size() ? &hw.gpus[options.gpu_index] : nullptr;
  if (uses_gpu && !gpu) {
    return make_error(ErrorCode::invalid_argument, "the plan runs work on a GPU but hardware profile {} has no GPU {}",
                      hw.name, options.gpu_index);
  }
  if (hw.storage.random_read.empty()) {
    return make_error(ErrorCode::invalid_argument, "hardware profile {}: no storage.random_read entry", hw.name);
  }
  const double B = static_cast<double>(plan.expert_bytes);
  const double upload_gbps = gpu ? gpu->upload_gbps : 1.0;
  const bool unified = gpu && gpu->unified_memory;
  const double storage_gbps = hw.storage.throughput_gbps(plan.expert_bytes);

  std::vector<Lru> dynamic, cache;
  for (uint32_t l = 0; l < plan.n_layer; ++l) {
    dynamic.emplace_back(std::max(1u, pl.n_dynamic_slots));
    cache.emplace_back(std::max(1u, pl.ram_cache_experts));
  }
  SimulationResult r;
  double total_us = 0, upload_total = 0, storage_total = 0;
  for (size_t t = 0; t < trace.tokens.size(); ++t) {
    const bool counted = t >= options.warmup_tokens;
    double token_us = plan.predicted.head_us + plan.predicted.submit_us;
    for (uint32_t l = 0; l < plan.n_layer; ++l) {
      uint32_t up_miss = 0, st_miss = 0;
      for (int32_t e : trace.tokens[t][l]) {
        TierStats* stats = nullptr;
        bool hit = true;
        switch (pl.tiers[l][static_cast<size_t>(e)]) {
          case ExpertTier::gpu_pinned: stats = &r.gpu_pinned; break;
          case ExpertTier::ram_cpu: stats = &r.ram_cpu; break;
          case ExpertTier::gpu_dynamic:
            stats = &r.gpu_dynamic;
            hit = dynamic[l].access(e);
            up_miss += !hit;
            break;
          case ExpertTier::storage:
            stats = &r.storage;
            hit = cache[l].access(e);
            st_miss += !hit;
            break;
        }
        if (counted) {
          ++stats->uses;
          stats->hits += hit;
        }
      }
      if (!counted) continue;
      const LayerCost& c = plan.predicted.layers[l];
      const double up_bytes = up_miss * B, st_bytes = st_miss * B;
      const double upload_us = up_bytes / (upload_gbps * 1e3);
      const double storage_us = st_bytes / (storage_gbps * 1e3) + (st_miss > 0 ? hw.storage.latency_us : 0.0);
      double bandwidth_us = 0;
      if (hw.shared_memory_bus && c.bandwidth_us > 0) {
        const double k = unified ? 2.0 : 0.0;
        const double bus = c.bandwidth_us * hw.shared_bandwidth_gbps * 1e3 - k * c.upload_bytes - c.storage_bytes +
                           k * up_bytes + st_bytes;
        bandwidth_us = std::max(0.0, bus) / (hw.shared_bandwidth_gbps * 1e3);
      }
      token_us += combine_layer_us(c.attention_us, c.cpu_experts_us, c.gpu_experts_us, upload_us, storage_us,
                                   c.sync_us, bandwidth_us);
      upload_total += up_bytes;
      storage_total += st_bytes;
    }
    if (counted) {
      total_us += token_us;
      ++r.n_tokens;
    }
  }
  const double n = static_cast<double>(r.n_tokens);
  r.upload_bytes_per_token = upload_total / n;
  r.storage_bytes_per_token = storage_total / n;
  r.token_us = total_us / n;
  r.tokens_per_s = r.token_us > 0 ? 1e6 / r.token_us : 0.0;
  return r;
}

std::string simulation_summary(const SimulationResult& r) {
  const double mib = 1024.0 * 1024.0;
  return fmt::format(
      "simulated {} tokens: {:.2f} tokens/s ({:.1f} us/token)\n"
      "  hit rates: gpu pinned {:.3f} ({} uses), gpu dynamic {:.3f} ({} uses), ram_cpu {:.3f} ({} uses), "
      "storage {:.3f} ({} uses)\n"
      "  per token: upload {:.3f} MiB, storage reads {:.3f} MiB\n",
      r.n_tokens, r.tokens_per_s, r.token_us, r.gpu_pinned.hit_rate(), r.gpu_pinned.uses, r.gpu_dynamic.hit_rate(),
      r.gpu_dynamic.uses, r.ram_cpu.hit_rate(), r.ram_cpu.uses, r.storage.hit_rate(), r.storage.uses,
      r.upload_bytes_per_token / mib, r.storage_bytes_per_token / mib);
}

}  // namespace tandem
