// `tandem report`: the pictures of a profile (runtime/report.h): heatmap.svg, lru.svg,
// sparsity.svg and a self-contained report.html. With -m, refuses a profile made for
// another model (content hash).
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "runtime/model.h"
#include "runtime/report.h"

namespace tandem::tools {
namespace {

struct ReportCmdOptions {
  std::string profile;
  std::string output_dir = "report";
  std::string model;
};

int run_report(const ReportCmdOptions& o) {
  auto profile = load_profile(o.profile);
  if (!profile.ok()) return report_error(profile.status());
  if (!o.model.empty()) {
    auto model = Model::load(o.model);
    if (!model.ok()) return report_error(model.status());
    if (model->content_hash() != profile->model_hash) {
      return report_error(make_error(ErrorCode::invalid_argument,
                                     "{}: profile was made for model hash {}, but {} has hash {}", o.profile,
                                     profile->model_hash, o.model, model->content_hash()));
    }
  }
  if (Status s = write_report(*profile, o.output_dir); !s.ok()) return report_error(s);
  const ProfileSummary sum = summarize_profile(*profile);
  std::printf("%s: %s, %llu tokens; routing entropy %.3f of %.3f bits; mean LRU hit rate %.1f%% at c=%u\n",
              o.profile.c_str(), profile->model_name.c_str(), static_cast<unsigned long long>(profile->n_tokens),
              sum.mean_entropy_bits, sum.max_entropy_bits, 100 * sum.mean_hit_k, sum.c_k);
  std::printf("wrote %s/{heatmap.svg,lru.svg,sparsity.svg,report.html}\n", o.output_dir.c_str());
  return 0;
}

const CommandRegistration reg{
    "report", "Pictures of a profile: heatmap, LRU hit-rate curves, neuron sparsity, HTML", 36, [](CLI::App& sub) {
      auto o = std::make_shared<ReportCmdOptions>();
      sub.add_option("profile", o->profile, "profile JSON written by `tandem profile`")->required();
      sub.add_option("-o,--output", o->output_dir, "folder to write into")->capture_default_str();
      sub.add_option("-m,--model", o->model, "refuse the profile unless it was made for this GGUF model");
      return [o] { return run_report(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
