// Subcommand registry for the `tandem` command. Each tools/cmd_<name>.cpp registers itself:
//
//   static tandem::tools::CommandRegistration reg{"inspect", "Print a GGUF model's ...", 60,
//       [](CLI::App& sub) {
//         auto o = std::make_shared<InspectOptions>();
//         sub.add_option("file", o->path, "...")->required();
//         return [o] { return run_inspect(*o); };   // returns the process exit code
//       }};
//
// `order` sorts the help listing. Flags follow llama.cpp's names wherever one exists.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem::tools {

using CommandMain = std::function<int()>;
using CommandSetup = std::function<CommandMain(CLI::App&)>;

struct CommandInfo {
  std::string name;
  std::string help;
  int order;
  CommandSetup setup;
};

std::vector<CommandInfo>& command_registry();

struct CommandRegistration {
  CommandRegistration(std::string name, std::string help, int order, CommandSetup setup) {
    command_registry().push_back({std::move(name), std::move(help), order, std::move(setup)});
  }
};

// Prints "error: <message>" to stderr and returns exit code 1 (2 for invalid arguments).
int report_error(const Status& status);

// The model used when no -m is given: $TANDEM_MODEL, else models/default.gguf in the
// source tree (written by `tandem make-model --preset default` on first use).
std::string default_model_path();

}  // namespace tandem::tools
