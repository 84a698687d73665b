// `tandem profile`: runs calibration text (-f, else the built-in corpus) through a model and
// writes its expert profile (planner/profile.h) for `tandem plan`, optionally a routing trace
// for `tandem simulate` (--trace) and the report's pictures (--plot). See runtime/profiler.h.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cmd_common.h"
#include "command.h"
#include "runtime/builtin_corpus.h"
#include "runtime/profiler.h"
#include "runtime/report.h"

namespace tandem::tools {
namespace {

struct ProfileCmdOptions {
  CommonOptions common;
  std::string prompts;
  std::string output;
  std::string trace;
  bool chat = false;
  uint64_t max_tokens = 0;
  bool plot = false;
};

// "<dir>/x.profile.json" -> "<dir>/x-report": the folder --plot writes.
std::filesystem::path report_dir_for(const std::filesystem::path& profile) {
  std::string stem = profile.filename().string();
  for (const char* ext : {".json", ".profile"}) {
    const std::string e = ext;
    if (stem.size() > e.size() && stem.compare(stem.size() - e.size(), e.size(), e) == 0) stem.resize(stem.size() - e.size());
  }
  return profile.parent_path() / (stem + "-report");
}

int run_profile(const CLI::App& sub, ProfileCmdOptions& o) {
  if (Status s = take_llama_flags(sub, o.common, /*allow_sys=*/false); !s.ok()) return report_error(s);
  std::string text;
  if (!o.prompts.empty()) {
    auto t = read_text_file(o.prompts);
    if (!t.ok()) return report_error(t.status());
    text = std::move(*t);
  } else {
    text = std::string(builtin_corpus());
  }
  auto session = open_session(o.common, "profile");
  if (!session.ok()) return report_error(session.status());
  Session& s = **session;

  std::filesystem::path out = o.output;
  if (out.empty()) {
    const std::filesystem::path model = o.common.model.empty() ? default_model_path() : o.common.model;
    out = model.stem().string() + ".profile.json";
  }
  std::fprintf(stderr, "profile: text %s, %s, %s\n", o.prompts.empty() ? "built-in corpus" : o.prompts.c_str(),
               o.chat ? "ChatML turns" : "plain prompts",
               o.max_tokens ? fmt::format("at most {} tokens", o.max_tokens).c_str() : "all tokens");

  ProfileOptions po;
  po.chat = o.chat;
  po.max_tokens = o.max_tokens;
  po.record_trace = !o.trace.empty();
  ProgressPrinter printer(stderr);
  auto run = profile_session(s, text, po, [&](const ProfileProgressInfo& info) { printer(info); });
  printer.finish();
  if (!run.ok()) return report_error(run.status());

  if (Status st = save_profile(run->profile, out); !st.ok()) return report_error(st);
  std::printf("profile: %llu tokens from %llu prompts (%llu chunks) in %.2f s, %.1f tokens/s\n",
              static_cast<unsigned long long>(run->profile.n_tokens), static_cast<unsigned long long>(run->n_prompts),
              static_cast<unsigned long long>(run->n_chunks), run->seconds,
              run->seconds > 0 ? static_cast<double>(run->profile.n_tokens) / run->seconds : 0.0);
  const ProfileSummary sum = summarize_profile(run->profile);
  std::printf("routing entropy %.3f of %.3f bits; LRU hit rate %.1f%% at c=%u, %.1f%% at c=%u, %.1f%% at c=%u\n",
              sum.mean_entropy_bits, sum.max_entropy_bits, 100 * sum.mean_hit_k, sum.c_k, 100 * sum.mean_hit_2k,
              sum.c_2k, 100 * sum.mean_hit_half, sum.c_half);
  std::printf("wrote %s\n", out.string().c_str());
  if (po.record_trace) {
    if (Status st = save_routing_trace(run->trace, o.trace); !st.ok()) return report_error(st);
    std::printf("wrote %s (%zu tokens)\n", o.trace.c_str(), run->trace.tokens.size());
  }
  if (o.plot) {
    const std::filesystem::path dir = report_dir_for(out);
    if (Status st = write_report(run->profile, dir); !st.ok()) return report_error(st);
    std::printf("wrote %s/{heatmap.svg,lru.svg,sparsity.svg,report.html}\n", dir.string().c_str());
  }
  return 0;
}

const CommandRegistration reg{
    "profile", "Profile expert usage on calibration text (for `tandem plan`); --trace, --plot", 35,
    [](CLI::App& sub) {
      auto o = std::make_shared<ProfileCmdOptions>();
      add_model_options(sub, o->common, /*with_trace=*/false);
      sub.add_option("-f,--file", o->prompts,
                     "prompts file: one prompt per blank-line-separated block (default: the built-in corpus)");
      sub.add_flag("--chat", o->chat, "wrap each prompt in a ChatML user turn and the assistant header");
      sub.add_option("-o,--output", o->output, "profile JSON to write (default: <model stem>.profile.json here)");
      sub.add_option("--trace", o->trace, "also write the routing trace (JSON for `tandem simulate`)");
      sub.add_option("-n,--n-tokens", o->max_tokens, "stop after this many tokens (0 = all)")->capture_default_str();
      sub.add_flag("--plot", o->plot, "also write the report (tandem report) into <profile stem>-report/");
      const CLI::App* app = &sub;
      return [o, app] { return run_profile(*app, *o); };
    }};

}  // namespace
}  // namespace tandem::tools
