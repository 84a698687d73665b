// make_auto_plan: `tandem run|chat|bench --auto` — a placement plan (planner/plan.h) made on
// the spot for a loaded model, from the measured hardware profile and the model's usage
// profile when one is found beside it, else a flat prior (planner/flat_profile.h).
//
// Usage profile, first found of:
//   1. <model dir>/<model stem>.profile.json
//   2. <options.search_dir>/<model stem>.profile.json   (`tandem profile` writes
//   ./<stem>.profile.json) A profile whose model_hash is not this model's is skipped with a warning
//   naming it; none left: flat_profile(shape, name, hash).
// Hardware profile:
//   1. options.hardware when set, else $TANDEM_HARDWARE when set: must exist (not_found naming it);
//   2. else default_hardware_profile_path() = ${XDG_CACHE_HOME:-$HOME/.cache}/tandem/hardware.json;
//      when missing and options.allow_calibration: calibrate() (runtime/calibrate.h) with
//      quick = true, the model's shape and expert dtype, options.device ("auto" never picks a
//      software Vulkan device such as lavapipe), storage_file = the model; the result is saved
//      there (directory created; failing to write is a warning, the plan is still made).
//      Calibration's figures depend on the expert shape: a cached profile measured for another
//      n_embd x n_ff_exp is used but warned about (its notes name the shape).
// Budget (planner/budget.h): without options.ram_budget, ram = the hardware profile's
//   ram_bytes. With it (--mem-limit), ram = the limit less the executors' reserve for
//   activations, code and heaps (StreamingExecutorOptions::reserve_bytes, 64 MiB; a limit not
//   above it is out_of_memory), and the plan must also fit as the executor counts it: the
//   planner counts min(ram_cache_experts, storage experts) RAM cache slots per streaming
//   layer at expert_bytes each, the executor ram_cache_experts slots in every layer at
//   expert_slot_bytes() (O_DIRECT padding). So ram_cache_experts is trimmed to the most
//   storage experts of any layer, and while the executor's count exceeds the budget, the
//   budget is cut by the excess and the plan made again (at most 8 rounds, cutting one slot more than the excess each time, else
//   out_of_memory naming both figures). gpu = options.gpu_budget when set, else the first
//   GPU's memory_bytes (0 without a GPU). Objective decode; CostOptions dtypes from the model's
//   tensors (as `tandem plan`), context_length = options.n_ctx (0: the model's n_ctx_train).
// The plan carries model_name = Model::name() and model_hash = Model::content_hash(), so
// make_executor accepts it for this model.
// Progress lines (which hardware profile, which usage profile or the flat prior, calibration
// and its duration) go to options.progress, or to log_info when it is empty.
// Errors: not_found for an explicit hardware profile that does not exist; the loaders' own
// (invalid_file naming the file and JSON path) for an unreadable usage or hardware profile;
// not_found when no hardware profile exists and calibration is not allowed; calibrate()'s
// errors with "--auto: calibrating" in front; make_plan's (out_of_memory with the minimum
// bytes when the budget cannot hold the model).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "planner/plan.h"
#include "runtime/model.h"

namespace tandem {

struct AutoPlanOptions {
  std::filesystem::path model_path;  // the loaded model's file: where its profile is looked for
  std::filesystem::path hardware;    // --hardware; empty: $TANDEM_HARDWARE, then the cache
  std::filesystem::path search_dir = ".";  // second place for <stem>.profile.json
  uint64_t ram_budget = 0;             // --mem-limit, bytes; 0: the hardware profile's ram_bytes
  std::optional<uint64_t> gpu_budget;  // bytes; unset: the first GPU's memory (0 without one)
  uint32_t n_ctx = 4096;               // KV cache length the plan is costed for; 0: n_ctx_train
  bool allow_calibration = true;
  std::string device = "auto";  // calibrate's device choice (gpu/device_select.h)
  std::function<void(std::string_view)> progress;
};

struct AutoPlan {
  Plan plan;
  std::filesystem::path hardware_path;  // the hardware profile used
  bool calibrated = false;  // measured now (hardware_path is where it was saved, or empty)
  double calibrate_seconds = 0;
  std::filesystem::path profile_path;  // the usage profile used; empty: the flat prior
  std::string description;             // one line: hardware, usage profile, budget, prediction
};

Result<AutoPlan> make_auto_plan(const Model& model, const AutoPlanOptions& options);

// ${XDG_CACHE_HOME:-$HOME/.cache}/tandem; empty when neither variable is set.
std::filesystem::path tandem_cache_dir();
// tandem_cache_dir() / "hardware.json" (empty when the cache dir is).
std::filesystem::path default_hardware_profile_path();

// Writes the plan where make_executor (which takes a plan file) can read it:
// tandem_cache_dir() / "auto-<model hash>.plan.json", or, when that cannot be written (logged
// as a warning), the same name in the system temp directory. Returns the path written.
// Errors: io_error when neither can be written.
Result<std::filesystem::path> save_auto_plan(const Plan& plan);

}  // namespace tandem
