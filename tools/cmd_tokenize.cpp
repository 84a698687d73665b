// `tandem tokenize`: print how a model's tokenizer splits a prompt, like llama.cpp's
// llama-tokenize (examples/tokenize/tokenize.cpp): one line per token "%6d -> 'piece'",
// or "[id, id, ...]" with --ids.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "command.h"
#include "runtime/gguf_file.h"
#include "runtime/tokenizer.h"

namespace tandem::tools {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string file;
  bool ids = false;
  bool no_parse_special = false;
  bool no_bos = false;
  bool show_count = false;
};

int run_tokenize(const TokenizeOptions& o) {
  std::string text = o.prompt;
  if (!o.file.empty()) {
    std::ifstream in(o.file, std::ios::binary);
    if (!in) return report_error(make_error(ErrorCode::not_found, "{}: cannot open prompt file", o.file));
    std::stringstream ss;
    ss << in.rdbuf();
    text = std::move(ss).str();
  }
  const std::string path = o.model.empty() ? default_model_path() : o.model;
  auto file = GgufFile::open(path);
  if (!file.ok()) return report_error(file.status());
  auto tok = Tokenizer::from_gguf(*file);
  if (!tok.ok()) return report_error(tok.status());

  const std::vector<int32_t> ids = tok->encode(text, !o.no_bos, !o.no_parse_special);
  if (o.ids) {
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", line.c_str());
  } else {
    for (int32_t id : ids) {
      const std::string piece = tok->token_to_piece(id, true);
      std::printf("%6d -> '%s'\n", id, piece.c_str());
    }
  }
  if (o.show_count) std::printf("Total number of tokens: %zu\n", ids.size());
  return 0;
}

const CommandRegistration reg{
    "tokenize", "Print the tokens of a prompt (like llama-tokenize)", 30, [](CLI::App& sub) {
      auto o = std::make_shared<TokenizeOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model file (default: $TANDEM_MODEL or models/default.gguf)");
      auto* p = sub.add_option("-p,--prompt", o->prompt, "text to tokenize");
      auto* f = sub.add_option("-f,--file", o->file, "read the text to tokenize from a file");
      p->excludes(f);
      sub.add_flag("--ids", o->ids, "print only the ids, as [id, id, ...]");
      sub.add_flag("--no-parse-special", o->no_parse_special,
                   "treat special-token text (<|im_start|> ...) as plain text");
      sub.add_flag("--no-bos", o->no_bos, "do not add BOS/EOS even when the model asks for them");
      sub.add_flag("--show-count", o->show_count, "print the number of tokens at the end");
      return [o, p, f] {
        if (p->count() == 0 && f->count() == 0) {
          return report_error(make_error(ErrorCode::invalid_argument, "tokenize: give the text with -p TEXT or -f FILE"));
        }
        return run_tokenize(*o);
      };
    }};

}  // namespace
}  // namespace tandem::tools
