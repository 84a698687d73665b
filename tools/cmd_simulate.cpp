// `tandem simulate`: replays a routing trace against a plan on a hardware profile
// (planner/simulate.h): per-tier hit rates, bytes moved per token, tokens/s.
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "planner/simulate.h"

namespace tandem::tools {
namespace {

struct SimulateCmdOptions {
  std::string trace;
  std::string plan;
  std::string hardware;
  uint32_t warmup = 0;
};

int run_simulate(const SimulateCmdOptions& o) {
  auto trace = load_routing_trace(o.trace);
  if (!trace.ok()) return report_error(trace.status());
  auto plan = load_plan(o.plan);
  if (!plan.ok()) return report_error(plan.status());
  auto hw = load_hardware_profile(o.hardware);
  if (!hw.ok()) return report_error(hw.status());
  if (!plan->hardware_name.empty() && plan->hardware_name != hw->name) {
    std::fprintf(stderr, "simulate: warning: plan %s was made for hardware '%s', simulating on '%s'\n", o.plan.c_str(),
                 plan->hardware_name.c_str(), hw->name.c_str());
  }
  SimulateOptions options;
  options.warmup_tokens = o.warmup;
  auto r = simulate(*trace, *plan, *hw, options);
  if (!r.ok()) return report_error(r.status());
  std::printf("plan predicted %.2f tokens/s\n", plan->predicted.tokens_per_s);
  std::fputs(simulation_summary(*r).c_str(), stdout);
  return 0;
}

const CommandRegistration reg{
    "simulate", "Replay a routing trace against a plan: hit rates, bytes moved, tokens/s", 41, [](CLI::App& sub) {
      auto o = std::make_shared<SimulateCmdOptions>();
      sub.add_option("--trace", o->trace, "routing trace JSON (planner/simulate.h)")->required();
      sub.add_option("--plan", o->plan, "plan JSON written by `tandem plan -o`")->required();
      sub.add_option("--hardware", o->hardware, "hardware profile JSON")->required();
      sub.add_option("--warmup", o->warmup, "tokens that fill the caches before counting")->capture_default_str();
      return [o] { return run_simulate(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
