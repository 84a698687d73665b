// `--auto` as the commands take it (tools/cmd_common.h for run/chat/perplexity/profile,
// tools/cmd_bench.cpp): checks the flags, loads the model, makes the plan
// (runtime/auto_plan.h), writes it to the cache and says on stderr what it used.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "core/status.h"
#include "runtime/auto_plan.h"
#include "runtime/model.h"

namespace tandem::tools {

struct AutoPlanFile {
  AutoPlan plan;
  std::filesystem::path path;  // where the plan JSON was written (what --plan would name)
};

// ao.model_path names the model; ao.progress is set here (lines prefixed "<command>: --auto: ").
// Errors: invalid_argument for --hardware without --auto or --auto with --plan; the model
// loader's, make_auto_plan's and save_auto_plan's own.
inline Result<AutoPlanFile> auto_plan_for_command(bool auto_flag, const std::string& plan_flag, AutoPlanOptions ao,
                                                  const char* command) {
  if (!auto_flag) {
    return make_error(ErrorCode::invalid_argument, "--hardware {}: only with --auto", ao.hardware.string());
  }
  if (!plan_flag.empty()) {
    return make_error(ErrorCode::invalid_argument, "--auto and --plan {}: give one (--auto makes the plan itself)",
                      plan_flag);
  }
  TANDEM_ASSIGN_OR_RETURN(Model model, Model::load(ao.model_path));
  ao.progress = [command](std::string_view line) {
    std::fprintf(stderr, "%s: --auto: %.*s\n", command, static_cast<int>(line.size()), line.data());
  };
  AutoPlanFile out;
  TANDEM_ASSIGN_OR_RETURN(out.plan, make_auto_plan(model, ao));
  TANDEM_ASSIGN_OR_RETURN(out.path, save_auto_plan(out.plan.plan));
  std::fprintf(stderr, "%s: %s; plan written to %s\n", command, out.plan.description.c_str(), out.path.c_str());
  return out;
}

}  // namespace tandem::tools
