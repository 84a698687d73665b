// `tandem run`: generate text from a prompt, like llama.cpp's llama-cli / llama-simple:
// the generated text streams to stdout; at the end stderr gets prompt and generation
// tokens/s, time to first token and peak RSS.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cmd_common.h"
#include "command.h"
#include "runtime/tokenizer.h"

namespace tandem::tools {
namespace {

struct RunOptions {
  CommonOptions common;
  std::string prompt;
  std::string file;
  int32_t n_predict = -1;
  bool chat = false;
};

int run_run(const CLI::App& sub, RunOptions& o) {
  if (Status s = take_llama_flags(sub, o.common, /*allow_sys=*/true); !s.ok()) return report_error(s);
  std::string text = o.prompt;
  if (!o.file.empty()) {
    auto t = read_text_file(o.file);
    if (!t.ok()) return report_error(t.status());
    text = std::move(*t);
  }
  if (text.empty()) return report_error(make_error(ErrorCode::invalid_argument, "empty prompt: give -p TEXT or -f FILE"));
  auto session = open_session(o.common, "run");
  if (!session.ok()) return report_error(session.status());
  Session& s = **session;
  std::vector<int32_t> tokens;
  if (o.chat) {
    std::vector<ChatMessage> msgs;
    if (!o.common.system_prompt.empty()) msgs.push_back({"system", o.common.system_prompt});
    msgs.push_back({"user", text});
    tokens = s.tokenize(render_chatml(msgs, /*add_generation_prompt=*/true), s.tokenizer().add_bos(), true);
  } else {
    tokens = s.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
  }
  auto st = s.generate(tokens, o.n_predict, [](int32_t, std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!st.ok()) return report_error(st.status());
  print_timings(*st);
  print_work_done("run", s.executor());
  return 0;
}

const CommandRegistration reg{
    "run", "Generate text from a prompt (like llama-cli)", 10, [](CLI::App& sub) {
      auto o = std::make_shared<RunOptions>();
      add_model_options(sub, o->common);
      auto* p = sub.add_option("-p,--prompt", o->prompt, "prompt text");
      auto* f = sub.add_option("-f,--file", o->file, "read the prompt from a file");
      p->excludes(f);
      sub.add_option("-n,--n-predict", o->n_predict, "tokens to generate (-1: until end of generation or a full context)")
          ->capture_default_str();
      sub.add_flag("--chat", o->chat, "wrap the prompt in ChatML (system prompt: -sys/--system-prompt)");
      sub.add_option("--system-prompt", o->common.system_prompt, "system message for --chat (also -sys)");
      add_sampling_options(sub, o->common);
      const CLI::App* app = &sub;
      return [o, app] { return run_run(*app, *o); };
    }};

}  // namespace
}  // namespace tandem::tools
