#include "runtime/auto_plan.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/log.h"
#include "planner/flat_profile.h"
#include "planner/planner.h"
#include "runtime/calibrate.h"
#include "runtime/expert_store.h"
#include "runtime/streaming_executor.h"

namespace tandem {

namespace {

using Say = std::function<void(const std::string&)>;

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool is_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

struct FoundProfile {
  Profile profile;
  std::filesystem::path path;  // empty: the flat prior
};

Result<FoundProfile> find_usage_profile(const Model& model, const AutoPlanOptions& o,
                                        const Say& say) {
  const std::string name = o.model_path.stem().string() + ".profile.json";
  std::vector<std::filesystem::path> candidates{o.model_path.parent_path() / name,
                                                o.search_dir / name};
  std::error_code ec;
  if (std::filesystem::equivalent(
          o.model_path.parent_path().empty() ? "." : o.model_path.parent_path(), o.search_dir,
          ec)) {
    candidates.pop_back();  // the same folder twice
  }
  for (const std::filesystem::path& path : candidates) {
    if (!is_file(path)) continue;
    TANDEM_ASSIGN_OR_RETURN(Profile p, load_profile(path));
    if (p.model_hash != model.content_hash()) {
      log_warn("--auto: skipping usage profile {}: made for model '{}' (hash {}), not {} (hash {})",
               path.string(), p.model_name, p.model_hash, model.name(), model.content_hash());
      continue;
    }
    say(fmt::format("usage profile {} ({} tokens)", path.string(), p.n_tokens));
    return FoundProfile{std::move(p), path};
  }
  say(fmt::format(
      "no usage profile ({} here or beside the model): flat prior, every expert used with "
      "probability {}/{}, gate activity {} (planner/flat_profile.h)",
      name, model.shape().n_expert_used, model.shape().n_expert, k_flat_gate_activity));
  return FoundProfile{flat_profile(model.shape(), model.name(), model.content_hash()), {}};
}

DType expert_dtype(const Model& model) {
  const ModelWeights& w = model.weights();
  return w.layers.empty() ? DType::q4_0 : w.layers[0].ffn_up_exps.dtype;
}

// Expert times are measured at one expert shape; say so when the cached profile's is another.
void warn_if_other_shape(const HardwareProfile& hw, const std::filesystem::path& path,
                         const Model& model) {
  const std::string marker = "Expert figures at n_embd ";
  const std::string mine = fmt::format("{}{} x n_ff_exp {} {} ", marker, model.shape().n_embd,
                                       model.shape().n_ff_exp, dtype_name(expert_dtype(model)));
  for (const std::string& note : hw.notes) {
    if (note.find(marker) != std::string::npos && note.find(mine) == std::string::npos) {
      log_warn(
          "--auto: {} was calibrated for another expert shape than {} (n_embd {} x n_ff_exp {} "
          "{}); its expert times may not fit: `tandem calibrate -m MODEL -o {}` measures this one",
          path.string(), model.name(), model.shape().n_embd, model.shape().n_ff_exp,
          dtype_name(expert_dtype(model)), path.string());
      return;
    }
  }
}

// The cost model counts min(ram_cache_experts, the layer's storage experts) cache slots in
// each layer; the executors allocate ram_cache_experts in every layer that streams. Slots
// beyond the most storage experts of any layer can never be used: dropped.
void trim_cache_slots(Plan& plan) {
  uint32_t most = 0;
  for (const auto& layer : plan.placement.tiers) {
    uint32_t n = 0;
    for (ExpertTier t : layer) n += t == ExpertTier::storage;
    most = std::max(most, n);
  }
  plan.placement.ram_cache_experts = std::min(plan.placement.ram_cache_experts, most);
}

// Bytes the executor's --mem-limit check (expert_store.h, streaming_executor.cpp) counts beyond
// the planner's ram_bytes: ram_cache_experts slots in EVERY layer (the planner: min(slots,
// storage experts) in layers that stream), each of `slot` bytes (expert_slot_bytes: the
// expert plus O_DIRECT padding) where the planner counts expert_bytes.
constexpr int k_auto_plan_rounds = 8;

uint64_t slot_overhead(const Plan& plan, uint64_t slot) {
  const uint64_t slots = plan.placement.ram_cache_experts;
  uint64_t executor = 0, planner = 0;
  for (const auto& layer : plan.placement.tiers) {
    uint64_t n = 0;
    for (ExpertTier t : layer) n += t == ExpertTier::storage;
    executor += slots * slot;
    planner += n > 0 ? std::max<uint64_t>(1, std::min(slots, n)) * plan.expert_bytes : 0;
  }
  return executor > planner ? executor - planner : 0;
}

struct FoundHardware {
  HardwareProfile hw;
  std::filesystem::path path;
  bool calibrated = false;
  double seconds = 0;
};

Result<FoundHardware> find_hardware_profile(const Model& model, const AutoPlanOptions& o,
                                            const Say& say) {
  FoundHardware f;
  std::filesystem::path explicit_path = o.hardware;
  const char* source = "--hardware";
  if (explicit_path.empty()) {
    explicit_path = env_or_empty("TANDEM_HARDWARE");
    source = "$TANDEM_HARDWARE";
  }
  if (!explicit_path.empty()) {
    if (!is_file(explicit_path)) {
      return make_error(ErrorCode::not_found,
                        "{} {}: no such hardware profile (`tandem calibrate -o {}` makes one)",
                        source, explicit_path.string(), explicit_path.string());
    }
    TANDEM_ASSIGN_OR_RETURN(f.hw, load_hardware_profile(explicit_path));
    f.path = explicit_path;
    say(fmt::format("hardware profile {} ({}, from {})", f.path.string(), f.hw.name, source));
    warn_if_other_shape(f.hw, f.path, model);
    return f;
  }
  const std::filesystem::path cached = default_hardware_profile_path();
  if (!cached.empty() && is_file(cached)) {
    TANDEM_ASSIGN_OR_RETURN(f.hw, load_hardware_profile(cached));
    f.path = cached;
    say(fmt::format("hardware profile {} ({})", f.path.string(), f.hw.name));
    warn_if_other_shape(f.hw, f.path, model);
    return f;
  }
  if (!o.allow_calibration) {
    return make_error(
        ErrorCode::not_found,
        "--auto: no hardware profile (no --hardware, no $TANDEM_HARDWARE, nothing at '{}') and "
        "calibration is off: run `tandem calibrate -o FILE` and pass --hardware FILE",
        cached.string());
  }
  CalibrateOptions co;
  co.name = "this-machine (tandem --auto)";
  co.shape = model.shape();
  co.expert_dtype = expert_dtype(model);
  co.shape_source = o.model_path.string();
  co.device = o.device.empty() ? "auto" : o.device;
  co.storage_file = o.model_path;
  co.quick = true;
  co.progress = o.progress;
  say(fmt::format("no hardware profile at '{}': calibrating this machine (quick; device {})",
                  cached.string(), co.device));
  const auto t0 = std::chrono::steady_clock::now();
  auto hw = calibrate(co);
  if (!hw.ok()) return hw.status().with_context("--auto: calibrating");
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  f.hw = std::move(*hw);
  f.calibrated = true;
  if (cached.empty()) {
    log_warn("--auto: neither $XDG_CACHE_HOME nor $HOME is set: the hardware profile is not kept");
  } else {
    std::error_code ec;
    std::filesystem::create_directories(cached.parent_path(), ec);
    Status s = ec ? make_error(ErrorCode::io_error, "{}: cannot create the directory: {}",
                               cached.parent_path().string(), ec.message())
                  : save_hardware_profile(f.hw, cached);
    if (s.ok()) {
      f.path = cached;
    } else {
      log_warn("--auto: the hardware profile is not kept: {}", s.message());
    }
  }
  say(fmt::format("calibrated in {:.1f} s{}", f.seconds,
                  f.path.empty() ? std::string() : ", saved to " + f.path.string()));
  return f;
}

}  // namespace

std::filesystem::path tandem_cache_dir() {
  const std::string xdg = env_or_empty("XDG_CACHE_HOME");
  if (!xdg.empty()) return std::filesystem::path(xdg) / "tandem";
  const std::string home = env_or_empty("HOME");
  if (!home.empty()) return std::filesystem::path(home) / ".cache" / "tandem";
  return {};
}

std::filesystem::path default_hardware_profile_path() {
  const std::filesystem::path dir = tandem_cache_dir();
  return dir.empty() ? dir : dir / "hardware.json";
}

Result<AutoPlan> make_auto_plan(const Model& model, const AutoPlanOptions& o) {
  const Say say = [&](const std::string& line) {
    if (o.progress) {
      o.progress(line);
    } else {
      log_info("--auto: {}", line);
    }
  };
  TANDEM_ASSIGN_OR_RETURN(FoundHardware hw, find_hardware_profile(model, o, say));
  TANDEM_ASSIGN_OR_RETURN(FoundProfile usage, find_usage_profile(model, o, say));

  Budget budget;
  budget.ram = hw.hw.ram_bytes;
  uint64_t slot = 0;
  if (o.ram_budget > 0) {
    const uint64_t reserve = StreamingExecutorOptions{}.reserve_bytes;
    if (o.ram_budget <= reserve) {
      return make_error(
          ErrorCode::out_of_memory,
          "--auto: --mem-limit {:.1f} MiB is not above the executor's reserve of {:.1f} MiB "
          "(activations, code, heaps)",
          mib(o.ram_budget), mib(reserve));
    }
    budget.ram = o.ram_budget - reserve;
    TANDEM_ASSIGN_OR_RETURN(slot, expert_slot_bytes(model.file()));
  }
  budget.gpu_mem = o.gpu_budget         ? *o.gpu_budget
                   : hw.hw.gpus.empty() ? 0
                                        : hw.hw.gpus[0].memory_bytes;
  budget.objective = Objective::decode;

  PlanOptions po;
  const ModelWeights& w = model.weights();
  po.cost.expert_dtype = expert_dtype(model);
  if (!w.layers.empty()) po.cost.dense_dtype = w.layers[0].attn_q.dtype;
  po.cost.head_dtype = w.output.dtype;
  po.cost.embd_dtype = w.token_embd.dtype;
  po.cost.context_length = o.n_ctx > 0 ? o.n_ctx : model.shape().n_ctx_train;
  po.cost.objective = budget.objective;

  // With --mem-limit, a plan must fit what the executor will count, which is more than the
  // planner's ram_bytes by slot_overhead(); the budget is tightened by the excess and the
  // planning repeated. The planner may fill the tightened budget to the byte again, so each
  // round cuts one cache slot more than the excess (the overhead shrinks with the cache).
  const uint64_t target = budget.ram;
  Result<Plan> plan = make_error(ErrorCode::internal, "--auto: not planned");
  for (int round = 0; round < k_auto_plan_rounds; ++round) {
    plan = make_plan(model.shape(), usage.profile, hw.hw, budget, po);
    if (!plan.ok()) {
      return plan.status().with_context(fmt::format(
          "--auto: planning {} for hardware '{}' (budget ram {:.1f} MiB, gpu {:.1f} MiB)",
          o.model_path.string(), hw.hw.name, mib(budget.ram), mib(budget.gpu_mem)));
    }
    trim_cache_slots(*plan);
    if (o.ram_budget == 0) break;
    const uint64_t counted = plan->predicted.memory.ram_bytes + slot_overhead(*plan, slot);
    if (counted <= target) break;
    const uint64_t excess = counted - target;
    if (round == k_auto_plan_rounds - 1 || excess + slot >= budget.ram) {
      return make_error(
          ErrorCode::out_of_memory,
          "--auto: --mem-limit {:.1f} MiB: the plan keeps {:.1f} MiB resident as the executor "
          "counts it (planner {:.1f} MiB + cache slot overhead), over the {:.1f} MiB left after "
          "the executor's reserve",
          mib(o.ram_budget), mib(counted), mib(plan->predicted.memory.ram_bytes), mib(target));
    }
    budget.ram -= excess + slot;
  }
  plan->model_name = model.name();
  plan->model_hash = model.content_hash();

  AutoPlan out;
  out.hardware_path = hw.path;
  out.calibrated = hw.calibrated;
  out.calibrate_seconds = hw.seconds;
  out.profile_path = usage.path;
  out.description = fmt::format(
      "auto plan for {}: hardware '{}' ({}{}), usage {}; budget ram {:.1f} MiB, gpu {:.1f} MiB; "
      "{} solver predicts {:.2f} tokens/s",
      model.name(), hw.hw.name, hw.path.empty() ? std::string("not saved") : hw.path.string(),
      hw.calibrated ? fmt::format(", calibrated now in {:.1f} s", hw.seconds) : std::string(),
      usage.path.empty() ? std::string("flat prior") : "profile " + usage.path.string(),
      mib(target), mib(budget.gpu_mem), plan->solver, plan->predicted.tokens_per_s);
  out.plan = std::move(*plan);
  return out;
}

Result<std::filesystem::path> save_auto_plan(const Plan& plan) {
  const std::string name =
      "auto-" + (plan.model_hash.empty() ? std::string("model") : plan.model_hash) + ".plan.json";
  Status first;
  if (const std::filesystem::path dir = tandem_cache_dir(); !dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!ec) {
      first = save_plan(plan, dir / name);
      if (first.ok()) return dir / name;
    } else {
      first = make_error(ErrorCode::io_error, "{}: cannot create the directory: {}", dir.string(),
                         ec.message());
    }
  } else {
    first = make_error(ErrorCode::io_error, "no cache directory ($XDG_CACHE_HOME and $HOME unset)");
  }
  std::error_code ec;
  const std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
  if (ec) {
    return make_error(ErrorCode::io_error,
                      "--auto: cannot write the plan: {}; no temp directory: {}", first.message(),
                      ec.message());
  }
  log_warn("--auto: {}; writing the plan to {} instead", first.message(), (tmp / name).string());
  Status s = save_plan(plan, tmp / name);
  if (!s.ok()) return s.with_context("--auto: cannot write the plan");
  return tmp / name;
}

}  // namespace tandem
