// `tandem plan`: chooses where every expert of a model lives (GPU, RAM, storage) and where
// attention and the output head run, for a usage profile, a hardware profile and memory
// budgets (planner/planner.h). Prints the plan's summary; -o writes the plan JSON.
// --preset plans for a `make-model` preset's shape without reading a model file (every 2-D
// weight in --dtype), e.g. to plan from a kept profile after the model file was deleted.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "size_arg.h"
#include "planner/planner.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"

namespace tandem::tools {
namespace {

struct PlanCmdOptions {
  std::string model;
  std::string preset;
  std::string dtype = "q4_0";
  std::string profile;
  std::string hardware;
  std::string gpu_mem;
  std::string ram;
  std::string objective = "decode";
  std::string solver = "auto";
  std::string output;
  uint32_t n_ctx = 4096;
  bool explain = false;
};

// The shape, dtypes and name to plan for: from the model file, or from a make-model preset.
struct PlanTarget {
  ModelShape shape;
  CostOptions cost;
  std::string name;
};

Result<PlanTarget> plan_target(const PlanCmdOptions& o, const Profile& profile) {
  PlanTarget t;
  if (!o.preset.empty()) {
    if (!o.model.empty()) return make_error(ErrorCode::invalid_argument, "give either -m or --preset, not both");
    const auto dtype = dtype_from_name(o.dtype);
    if (!dtype) return make_error(ErrorCode::invalid_argument, "--dtype: '{}' is not a dtype name", o.dtype);
    MakeModelOptions mo;
    mo.preset = o.preset;
    mo.dtype = *dtype;
    TANDEM_ASSIGN_OR_RETURN(t.shape, resolve_model_shape(mo));
    t.cost.expert_dtype = t.cost.dense_dtype = t.cost.head_dtype = t.cost.embd_dtype = *dtype;
    t.name = "tandem-" + o.preset;
    return t;
  }
  const std::string model_path = o.model.empty() ? default_model_path() : o.model;
  auto model = Model::load(model_path);
  if (!model.ok()) return model.status();
  if (profile.model_hash != model->content_hash()) {
    return make_error(ErrorCode::invalid_argument, "profile {} was made for model '{}' (hash {}), but {} is '{}' (hash {})",
                      o.profile, profile.model_name, profile.model_hash, model_path, model->name(), model->content_hash());
  }
  // Sizes follow the file's dtypes.
  const ModelWeights& w = model->weights();
  if (!w.layers.empty()) {
    t.cost.expert_dtype = w.layers[0].ffn_up_exps.dtype;
    t.cost.dense_dtype = w.layers[0].attn_q.dtype;
  }
  t.cost.head_dtype = w.output.dtype;
  t.cost.embd_dtype = w.token_embd.dtype;
  t.shape = model->shape();
  t.name = model->name();
  return t;
}

int run_plan(const PlanCmdOptions& o) {
  auto profile = load_profile(o.profile);
  if (!profile.ok()) return report_error(profile.status());
  auto target = plan_target(o, *profile);
  if (!target.ok()) return report_error(target.status());
  auto hw = load_hardware_profile(o.hardware);
  if (!hw.ok()) return report_error(hw.status());

  Budget budget;
  budget.gpu_mem = hw->gpus.empty() ? 0 : hw->gpus[0].memory_bytes;
  budget.ram = hw->ram_bytes;
  if (!o.gpu_mem.empty()) {
    auto v = parse_size(o.gpu_mem, "--gpu-mem");
    if (!v.ok()) return report_error(v.status());
    budget.gpu_mem = *v;
  }
  if (!o.ram.empty()) {
    auto v = parse_size(o.ram, "--ram");
    if (!v.ok()) return report_error(v.status());
    budget.ram = *v;
  }
  const auto objective = objective_from_name(o.objective);
  if (!objective) {
    return report_error(make_error(ErrorCode::invalid_argument, "--objective: '{}' is not decode or prefill", o.objective));
  }
  budget.objective = *objective;

  PlanOptions options;
  options.cost = target->cost;
  if (o.solver == "exact") options.solver = PlanSolver::exact;
  else if (o.solver == "heuristic") options.solver = PlanSolver::heuristic;
  else if (o.solver != "auto") {
    return report_error(make_error(ErrorCode::invalid_argument, "--solver: '{}' is not auto, exact or heuristic", o.solver));
  }
  options.cost.context_length = o.n_ctx;

  std::fprintf(stderr, "plan: model %s (%s), profile %s (%llu tokens), hardware %s; budget gpu %.1f MiB, ram %.1f MiB, objective %s\n",
               target->name.c_str(), profile->model_hash.c_str(), o.profile.c_str(),
               static_cast<unsigned long long>(profile->n_tokens), hw->name.c_str(),
               static_cast<double>(budget.gpu_mem) / (1024.0 * 1024.0), static_cast<double>(budget.ram) / (1024.0 * 1024.0),
               o.objective.c_str());
  auto plan = make_plan(target->shape, *profile, *hw, budget, options);
  if (!plan.ok()) return report_error(plan.status());
  plan->model_name = target->name;
  std::fputs(plan_summary(*plan, o.explain).c_str(), stdout);
  if (!o.output.empty()) {
    if (Status s = save_plan(*plan, o.output); !s.ok()) return report_error(s);
    std::fprintf(stderr, "plan: wrote %s\n", o.output.c_str());
  }
  return 0;
}

const CommandRegistration reg{
    "plan", "Place experts on GPU, RAM or storage for a profile, a machine and memory budgets", 40,
    [](CLI::App& sub) {
      auto o = std::make_shared<PlanCmdOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model file (default: $TANDEM_MODEL or models/default.gguf)");
      sub.add_option("--preset", o->preset,
                     "plan for this make-model preset's shape (4b, 21b, ...) instead of reading a model file");
      sub.add_option("--dtype", o->dtype, "with --preset: dtype of every 2-D weight")->capture_default_str();
      sub.add_option("--profile", o->profile, "usage profile JSON (planner/profile.h)")->required();
      sub.add_option("--hardware", o->hardware, "hardware profile JSON (e.g. planner/hardware/steam-deck.json)")
          ->required();
      sub.add_option("--gpu-mem", o->gpu_mem, "GPU memory budget, e.g. 6G (default: the GPU's memory)");
      sub.add_option("--ram", o->ram, "RAM budget, e.g. 12G (default: the machine's RAM)");
      sub.add_option("--objective", o->objective, "decode or prefill")->capture_default_str();
      sub.add_option("--solver", o->solver, "auto, exact or heuristic")->capture_default_str();
      sub.add_option("-c,--ctx-size", o->n_ctx, "context length the KV cache is sized for")->capture_default_str();
      sub.add_option("-o,--output", o->output, "write the plan JSON here");
      sub.add_flag("--explain", o->explain, "print the reason for every choice");
      return [o] { return run_plan(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
