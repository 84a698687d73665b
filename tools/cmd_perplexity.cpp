// `tandem perplexity`: perplexity of a text file by llama-perplexity's method (see
// runtime/perplexity.h): prints the running value per chunk "[1]12.3456,[2]11.9876,..." and
// "Final estimate: PPL = X +/- Y" on stdout.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cmd_common.h"
#include "command.h"
#include "runtime/perplexity.h"

namespace tandem::tools {
namespace {

struct PerplexityCmdOptions {
  CommonOptions common;
  std::string file;
};

int run_perplexity(const CLI::App& sub, PerplexityCmdOptions& o) {
  if (Status s = take_llama_flags(sub, o.common, /*allow_sys=*/false); !s.ok()) return report_error(s);
  auto text = read_text_file(o.file);
  if (!text.ok()) return report_error(text.status());
  auto session = open_session(o.common, "perplexity");
  if (!session.ok()) return report_error(session.status());
  Session& s = **session;
  const Tokenizer& tok = s.tokenizer();
  const std::vector<int32_t> tokens = s.tokenize(*text, /*add_special=*/true, /*parse_special=*/false);
  PerplexityOptions po;
  po.n_ctx = s.executor().n_ctx();
  if (tok.add_bos()) po.bos = tok.bos();
  std::fprintf(stderr, "perplexity: %zu tokens, %zu chunks of %u\n", tokens.size(), tokens.size() / po.n_ctx, po.n_ctx);
  auto r = perplexity(s.executor(), tokens, po, [](uint32_t chunk, double ppl) {
    std::printf("[%u]%.4f,", chunk + 1, ppl);
    std::fflush(stdout);
  });
  if (!r.ok()) return report_error(r.status());
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_error);
  return 0;
}

const CommandRegistration reg{
    "perplexity", "Perplexity of a text file (like llama-perplexity)", 12, [](CLI::App& sub) {
      auto o = std::make_shared<PerplexityCmdOptions>();
      o->common.n_ctx = 512;
      add_model_options(sub, o->common);
      sub.add_option("-f,--file", o->file, "text file to score")->required();
      const CLI::App* app = &sub;
      return [o, app] { return run_perplexity(*app, *o); };
    }};

}  // namespace
}  // namespace tandem::tools
