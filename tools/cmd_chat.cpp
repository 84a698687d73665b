// `tandem chat`: an interactive ChatML conversation (spec §4.4), like llama-cli -cnv.
// User turns are read line by line from stdin; with a terminal a "> " prompt is shown, with
// piped stdin nothing but the answers is printed (one block per turn, ending in a newline).
// The KV cache is kept between turns: each turn evaluates only the new part of the
// re-rendered conversation.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cmd_common.h"
#include "command.h"
#include "runtime/tokenizer.h"

namespace tandem::tools {
namespace {

struct ChatOptions {
  CommonOptions common;
  int32_t n_predict = -1;
};

int run_chat(const CLI::App& sub, ChatOptions& o) {
  if (Status s = take_llama_flags(sub, o.common, /*allow_sys=*/true); !s.ok()) return report_error(s);
  auto session = open_session(o.common, "chat");
  if (!session.ok()) return report_error(session.status());
  Session& s = **session;
  const bool tty = isatty(STDIN_FILENO) != 0;
  std::vector<ChatMessage> msgs;
  if (!o.common.system_prompt.empty()) msgs.push_back({"system", o.common.system_prompt});
  std::string line;
  while (true) {
    if (tty) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    const std::vector<int32_t> tokens =
        s.tokenize(render_chatml(msgs, /*add_generation_prompt=*/true), s.tokenizer().add_bos(), true);
    std::string answer;
    auto st = s.generate(tokens, o.n_predict, [&](int32_t, std::string_view piece) {
      answer.append(piece);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!st.ok()) return report_error(st.status());
    msgs.push_back({"assistant", answer});
    if (tty) print_timings(*st);
  }
  return 0;
}

const CommandRegistration reg{
    "chat", "Interactive ChatML conversation; user turns from stdin (like llama-cli -cnv)", 11, [](CLI::App& sub) {
      auto o = std::make_shared<ChatOptions>();
      add_model_options(sub, o->common);
      sub.add_option("--system-prompt", o->common.system_prompt, "system message (also -sys)");
      sub.add_option("-n,--n-predict", o->n_predict, "tokens per answer at most (-1: until end of generation)")
          ->capture_default_str();
      add_sampling_options(sub, o->common);
      const CLI::App* app = &sub;
      return [o, app] { return run_chat(*app, *o); };
    }};

}  // namespace
}  // namespace tandem::tools
