#include "runtime/executor_factory.h"

#include "core/log.h"
#include "planner/profile.h"
#include "runtime/cache_policy.h"
#include "runtime/cpu_executor.h"
#include "runtime/forward_ops.h"
#include "planner/plan.h"
#include "runtime/gpu_executor.h"
#include "runtime/hybrid_executor.h"
#include "runtime/streaming_executor.h"

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace tandem {

namespace {

Result<std::optional<Plan>> load_plan_for(const Model& model, const std::filesystem::path& path) {
  if (path.empty()) return std::optional<Plan>();
  TANDEM_ASSIGN_OR_RETURN(Plan plan, load_plan(path));
  if (!plan.model_hash.empty() && plan.model_hash != model.content_hash()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: the plan was made for model '{}' (hash {}), not for {} (hash {}): run `tandem plan` for "
                      "this model",
                      path.string(), plan.model_name, plan.model_hash, model.name(), model.content_hash());
  }
  return std::optional<Plan>(std::move(plan));
}

// The frequency policy's prior from --profile (empty: none).
Result<std::vector<double>> prior_for(const Model& model, const ExecutorOptions& options) {
  if (options.profile.empty()) return std::vector<double>();
  TANDEM_ASSIGN_OR_RETURN(Profile profile, load_profile(options.profile));
  if (!profile.model_hash.empty() && profile.model_hash != model.content_hash()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: the profile was made for model '{}' (hash {}), not for {} (hash {}): run `tandem profile` "
                      "for this model",
                      options.profile.string(), profile.model_name, profile.model_hash, model.name(),
                      model.content_hash());
  }
  auto prior = expert_priors_from_profile(profile, model.shape().n_layer, model.shape().n_expert);
  if (!prior.ok()) return prior.status().with_context(options.profile.string());
  return prior;
}

// --transpose-down is carried out by CpuExecutor alone; every other executor would read the
// standard layout as stored and drop the flag without a word. Refused there, before anything
// is opened (no device needed to say so). A transposed file makes the flag a no-op
// everywhere, as CpuExecutor treats it. `from_auto`: the placement was "auto" before
// resolve_placement, so the message says what it resolved to.
Status check_transpose_down(const Model& model, const ExecutorOptions& options, bool from_auto) {
  if (!options.transpose_down || model.shape().down_layout == DownLayout::transposed)
    return Status::success();
  const std::string& placement = options.placement;
  const std::string resolved = from_auto ? " (what --placement auto resolved to)" : "";
  std::string mode;
  if (placement == "gpu" || placement == "hybrid") {
    mode = fmt::format("the {} placement{}", placement, resolved);
  } else if (placement == "cpu" &&
             (options.mem_limit > 0 || !options.plan.empty() || !options.trace.empty())) {
    std::string why;
    for (auto [set, flag] : {std::pair{options.mem_limit > 0, "--mem-limit"},
                             std::pair{!options.plan.empty(), "--plan"},
                             std::pair{!options.trace.empty(), "--trace"}}) {
      if (set) why += (why.empty() ? "" : ", ") + std::string(flag);
    }
    mode = fmt::format("the cpu placement{} on the streaming executor (selected by {})", resolved,
                       why);
  } else {
    return Status::success();  // the plain cpu placement: CpuExecutor transposes at load
  }
  return make_error(
      ErrorCode::invalid_argument,
      "--transpose-down is not supported with {}: only the plain cpu placement (no --mem-limit, "
      "--plan or --trace) transposes at load. Run `tandem convert --transpose-down IN OUT` "
      "once and load OUT, which every placement reads",
      mode);
}

}  // namespace

bool plan_uses_gpu(const Plan& plan) {
  if (plan.placement.attention == Device::gpu || plan.placement.output_head == Device::gpu) return true;
  for (const auto& layer : plan.placement.tiers)
    for (ExpertTier t : layer)
      if (runs_on_gpu(t)) return true;
  return false;
}

std::string resolve_placement(std::string_view placement, const Plan* plan) {
  if (placement != "auto") return std::string(placement);
  if (plan == nullptr) return "cpu";
  return plan_uses_gpu(*plan) ? "hybrid" : "cpu";
}

Result<std::unique_ptr<Executor>> make_executor(const Model& model, const ExecutorOptions& options) {
  std::unique_ptr<ForwardOps> ops;
  if (options.cpu_ops == "plain") {
    ops = make_cpu_ops();
  } else if (options.cpu_ops != "fast") {
    return make_error(ErrorCode::invalid_argument, "unknown CPU ops '{}' (expected fast or plain)", options.cpu_ops);
  }
  CachePolicyKind policy = CachePolicyKind::lru;
  if (options.cache_policy == "frequency") {
    policy = CachePolicyKind::frequency;
  } else if (options.cache_policy != "lru") {
    return make_error(ErrorCode::invalid_argument, "unknown --cache-policy '{}' (expected lru or frequency)",
                      options.cache_policy);
  }
  TANDEM_ASSIGN_OR_RETURN(std::optional<Plan> plan, load_plan_for(model, options.plan));
  TANDEM_ASSIGN_OR_RETURN(std::vector<double> prior, prior_for(model, options));
  if (!prior.empty() && policy != CachePolicyKind::frequency) {
    log_info("--profile is the frequency policy's prior; --cache-policy {} does not use it", options.cache_policy);
  }
  if (options.placement == "auto") {
    ExecutorOptions resolved = options;
    resolved.placement = resolve_placement(options.placement, plan ? &*plan : nullptr);
    TANDEM_RETURN_IF_ERROR(check_transpose_down(model, resolved, /*from_auto=*/true));
    return make_executor(model, resolved);
  }
  TANDEM_RETURN_IF_ERROR(check_transpose_down(model, options, /*from_auto=*/false));
  if (options.placement == "cpu" && (options.mem_limit > 0 || plan || !options.trace.empty())) {
    StreamingExecutorOptions so;
    so.n_ctx = options.n_ctx;
    so.n_ubatch = options.n_ubatch;
    so.n_threads = options.n_threads;
    so.cache_type = options.cache_type;
    so.mem_limit = options.mem_limit;
    so.plan = plan ? &*plan : nullptr;
    so.policy = policy;
    so.frequency.prior = prior;
    so.trace = options.trace;
    if (options.cpu_ops == "plain") so.make_base_ops = [] { return make_cpu_ops(); };
    return make_streaming_executor(model, so);
  }
  if (options.placement == "cpu") {
    CpuExecutorOptions co;
    co.n_ctx = options.n_ctx;
    co.n_ubatch = options.n_ubatch;
    co.n_threads = options.n_threads;
    co.cache_type = options.cache_type;
    co.transpose_down = options.transpose_down;
    co.repack = options.repack;
    TANDEM_ASSIGN_OR_RETURN(auto ex, CpuExecutor::create(model, co, std::move(ops)));
    return std::unique_ptr<Executor>(std::move(ex));
  }
  if (options.placement == "gpu") {
    GpuExecutorOptions go;
    go.device = options.device;
    go.n_ctx = options.n_ctx;
    go.n_ubatch = options.n_ubatch;
    go.cache_type = options.cache_type;
    const char* check = std::getenv("TANDEM_CHECK_GPU");
    go.check = check != nullptr && std::strcmp(check, "") != 0 && std::strcmp(check, "0") != 0;
    return make_gpu_executor(model, go);
  }
  if (options.placement == "hybrid") {
    HybridExecutorOptions ho;
    ho.device = options.device;
    ho.n_ctx = options.n_ctx;
    ho.n_ubatch = options.n_ubatch;
    ho.n_threads = options.n_threads;
    ho.cache_type = options.cache_type;
    ho.plan = plan ? &*plan : nullptr;  // read during creation only
    ho.mem_limit = options.mem_limit;
    ho.trace = options.trace;
    ho.policy = policy;
    ho.frequency.prior = prior;
    if (options.cpu_ops == "plain") ho.make_base_ops = [] { return make_cpu_ops(); };
    return make_hybrid_executor(model, ho);
  }
  return make_error(ErrorCode::invalid_argument, "unknown placement '{}' (expected cpu, gpu, hybrid or auto)",
                    options.placement);
}

}  // namespace tandem
