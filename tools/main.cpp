// `tandem`: one command, subcommands registered by tools/cmd_*.cpp (see tools/command.h).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "command.h"
#include "core/log.h"

namespace tandem::tools {

std::vector<CommandInfo>& command_registry() {
  static std::vector<CommandInfo> registry;
  return registry;
}

int report_error(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return status.code() == ErrorCode::invalid_argument ? 2 : 1;
}

std::string default_model_path() {
  if (const char* env = std::getenv("TANDEM_MODEL"); env && *env) return env;
  return std::string(TANDEM_DEFAULT_MODEL_DIR) + "/default.gguf";
}

}  // namespace tandem::tools

int main(int argc, char** argv) {
  using namespace tandem::tools;
  CLI::App app{"tandem: run sparse Mixture-of-Experts models (SmallThinker) split between CPU and a Vulkan GPU",
               "tandem"};
  app.set_version_flag("--version", std::string("tandem ") + TANDEM_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  auto& registry = command_registry();
  std::stable_sort(registry.begin(), registry.end(),
                   [](const CommandInfo& a, const CommandInfo& b) { return a.order < b.order; });
  std::map<CLI::App*, CommandMain> mains;
  for (auto& cmd : registry) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.help);
    mains[sub] = cmd.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, fn] : mains) {
    if (sub->parsed()) return fn();
  }
  return 2;
}
