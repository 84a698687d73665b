// `tandem bench -m FILE -p 128 -n 64 -r 5 -t 2 [-o md|json|csv]`: prompt and generation speed
// in the manner of llama-bench (runtime/bench_runner.h). -p, -n, -t, -ub, --placement,
// --device, --plan and --mem-limit take comma lists and every combination is measured.
// --auto makes one plan for the model first (runtime/auto_plan.h) and benches it as --plan.
// The table goes to stdout, progress to stderr.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "auto_plan_cli.h"
#include "command.h"
#include "core/dtype.h"
#include "runtime/bench_runner.h"
#include "runtime/executor_factory.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "size_arg.h"

namespace tandem::tools {
namespace {

struct BenchCli {
  std::string model;
  std::string n_prompt = "128", n_gen = "64", threads = "0", ubatch = "512";
  std::string placement = "cpu", device, plan, mem_limit = "0", mmap = "1", repack = "1";
  bool auto_plan = false;
  std::string hardware;
  uint32_t repetitions = 5;
  std::string output = "md";
  std::string cpu_ops = "fast";
  std::string cache_type = "f16";
  uint64_t bandwidth_mib = 512;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.emplace_back();
  if (out.empty()) out.emplace_back();
  return out;
}

template <class T>
Result<std::vector<T>> numbers(const std::string& flag, const std::string& list, long long lo, long long hi) {
  std::vector<T> out;
  for (const std::string& v : split(list)) {
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size() || n < lo || n > hi) {
      return make_error(ErrorCode::invalid_argument, "{}: '{}' is not a number in [{}, {}]", flag, v, lo, hi);
    }
    out.push_back(static_cast<T>(n));
  }
  return out;
}

// --auto: plans for the model with the (single) --mem-limit as the RAM budget and a context of
// the longest test; without --placement, the plan's own (cpu, or hybrid when it uses a GPU).
Status plan_automatically(const CLI::App& sub, const BenchCli& c, BenchOptions& o) {
  if (o.mem_limit.size() != 1) {
    return make_error(ErrorCode::invalid_argument, "--auto plans for one --mem-limit, not a list of {}", o.mem_limit.size());
  }
  AutoPlanOptions ao;
  ao.model_path = o.model;
  ao.hardware = c.hardware;
  ao.ram_budget = o.mem_limit[0];
  ao.n_ctx = 3;  // as bench_runner sizes each combination's cache
  for (uint32_t p : o.n_prompt) ao.n_ctx = std::max(ao.n_ctx, p + 1);
  for (uint32_t n : o.n_gen) ao.n_ctx = std::max(ao.n_ctx, n + 1);
  ao.device = o.device.size() == 1 && !o.device[0].empty() ? o.device[0] : "auto";
  TANDEM_ASSIGN_OR_RETURN(AutoPlanFile f, auto_plan_for_command(c.auto_plan, c.plan, ao, "bench"));
  o.plan = {f.path};
  if (sub.count("--placement") == 0) o.placement = {resolve_placement("auto", &f.plan.plan)};
  return Status::success();
}

int run_bench_cmd(const CLI::App& sub, BenchCli& c) {
  // llama-bench's -ub (one dash, two letters) cannot be declared to CLI11: read it here. (Its -mmp
  // cannot even be read from the leftovers: CLI11 takes it as -m mp; --mmap it is.)
  const std::vector<std::string> rest = sub.remaining();
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "-ub" && i + 1 < rest.size()) {
      c.ubatch = rest[++i];

    } else {
      return report_error(make_error(ErrorCode::invalid_argument, "unknown argument '{}' (see --help)", rest[i]));
    }
  }
  BenchOptions o;
  o.model = c.model.empty() ? default_model_path() : c.model;
  if (c.model.empty()) {
    if (Status s = ensure_default_model(o.model); !s.ok()) return report_error(s);
  }
  auto p = numbers<uint32_t>("-p", c.n_prompt, 0, 1 << 24);
  auto n = numbers<uint32_t>("-n", c.n_gen, 0, 1 << 24);
  auto t = numbers<int>("-t", c.threads, 0, 4096);
  auto ub = numbers<uint32_t>("-ub", c.ubatch, 1, 1 << 20);
  auto mmp = numbers<int>("--mmap", c.mmap, 0, 1);
  auto rp = numbers<int>("--repack", c.repack, 0, 1);
  for (const Status* s : {&p.status(), &n.status(), &t.status(), &ub.status(), &mmp.status(), &rp.status()}) {
    if (!s->ok()) return report_error(*s);
  }
  o.n_prompt = *p;
  o.n_gen = *n;
  o.n_threads = *t;
  o.n_ubatch = *ub;
  o.use_mmap = *mmp;
  o.repack = *rp;
  o.placement = split(c.placement);
  o.device = split(c.device);
  o.plan.clear();
  for (const std::string& s : split(c.plan)) o.plan.emplace_back(s);
  o.mem_limit.clear();
  for (const std::string& s : split(c.mem_limit)) {
    auto v = parse_size(s, "--mem-limit");
    if (!v.ok()) return report_error(v.status());
    o.mem_limit.push_back(*v);
  }
  if (c.auto_plan || !c.hardware.empty()) {
    if (Status s = plan_automatically(sub, c, o); !s.ok()) return report_error(s);
  }
  o.repetitions = c.repetitions;
  o.cpu_ops = c.cpu_ops;
  const auto ct = dtype_from_name(c.cache_type);
  if (!ct || (*ct != DType::f16 && *ct != DType::f32)) {
    return report_error(make_error(ErrorCode::invalid_argument, "--cache-type-k: '{}' is not supported (f16 or f32)", c.cache_type));
  }
  o.cache_type = *ct;
  o.bandwidth_bytes = c.bandwidth_mib << 20;
  if (c.output != "md" && c.output != "json" && c.output != "csv") {
    return report_error(make_error(ErrorCode::invalid_argument, "-o: '{}' (expected md, json or csv)", c.output));
  }
  auto records = run_bench(o, [](std::string_view line) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  });
  if (!records.ok()) return report_error(records.status());
  const std::string text = c.output == "json" ? bench_json(*records) : c.output == "csv" ? bench_csv(*records)
                                                                                         : bench_markdown(*records);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

constexpr const char* k_footer = R"(
Per combination of the lists: a warm-up (one untimed pp and tg), then -r repetitions of
  pp: -p random token ids evaluated from an empty cache in one eval (split into -ub ubatches),
      followed by one decode; time to first token = pp + that decode;
  tg: as llama-bench, -n single-token evals after a 1-token prompt (an almost empty cache).
tokens/s are mean ± sample sd over the repetitions. For tg: weight bytes read per token (the
executor's counters, else estimated from the model's tensor sizes and the inactive-neuron
fraction measured in the same runs), and the roofline tokens/s = read bandwidth measured in
this process with the same thread count just before each tg repetition (mean ± sd; % of
roofline pairs each repetition with its own probe) / bytes per token. Peak RSS is the
kernel's VmHWM, reset before each combination (the probes' buffers excluded). Placements
that cannot run here give "not available" rows.
Each record carries the commit, compiler, build type and flags, CPU model, ISA
(TANDEM_MAX_ISA caps it), threads, model file, size and type, and the date.
)";

const CommandRegistration reg{
    "bench", "Prompt and generation speed with the memory roofline (like llama-bench)", 40, [](CLI::App& sub) {
      auto c = std::make_shared<BenchCli>();
      sub.footer(k_footer);
      sub.add_option("-m,--model", c->model, "GGUF model file (default: $TANDEM_MODEL or models/default.gguf)");
      sub.add_option("-p,--n-prompt", c->n_prompt, "prompt tokens, comma list (0 = no pp test)")->capture_default_str();
      sub.add_option("-n,--n-gen", c->n_gen, "generated tokens, comma list (0 = no tg test)")->capture_default_str();
      sub.add_option("-t,--threads", c->threads, "CPU threads, comma list (0 = all)")->capture_default_str();
      sub.add_option("--ubatch-size", c->ubatch, "tokens per ubatch, comma list (also -ub)")->capture_default_str();
      sub.add_option("-r,--repetitions", c->repetitions, "timed repetitions of each test")->capture_default_str();
      sub.add_option("-o,--output", c->output, "md | json | csv")->capture_default_str();
      sub.add_option("--placement", c->placement, "cpu | gpu | hybrid, comma list")->capture_default_str();
      sub.add_option("--device", c->device, "Vulkan device(s) for gpu/hybrid, comma list");
      sub.add_option("--plan", c->plan, "placement plan JSON file(s), comma list");
      sub.add_flag("--auto", c->auto_plan,
                   "plan now for this model (as `tandem run --auto`: its profile or a flat prior, the hardware "
                   "profile, --mem-limit as the RAM budget) and bench that plan; placement: the plan's unless given");
      sub.add_option("--hardware", c->hardware, "with --auto: hardware profile JSON from `tandem calibrate`");
      sub.add_option("--mem-limit", c->mem_limit, "resident memory limit(s) (e.g. 1G), comma list; 0 = none")
          ->capture_default_str();
      sub.add_option("--mmap", c->mmap,
                     "1: map the model (default); 0: read it into memory with transparent huge pages (as `tandem "
                     "run --no-mmap`); comma list (llama-bench's -mmp)")
          ->capture_default_str();
      sub.add_option("--repack", c->repack,
                     "1: the cpu placement repacks the weights at load (default, `tandem run`: expert up and down "
                     "rows side by side, and q4_0x16 / q4_0_split with the AVX2 and AVX-512 kernels); 0: the file's layout "
                     "(`tandem run --no-repack`); comma list")
          ->capture_default_str();
      sub.add_option("--cpu-ops", c->cpu_ops, "fast (SIMD kernel table) | plain")->capture_default_str();
      sub.add_option("--cache-type-k", c->cache_type, "KV cache type: f16 | f32")->capture_default_str();
      sub.add_option("--bandwidth-mib", c->bandwidth_mib, "buffer of the read-bandwidth probe in MiB (0 = skip it)")
          ->capture_default_str();
      sub.allow_extras();
      const CLI::App* app = &sub;
      return [c, app] { return run_bench_cmd(*app, *c); };
    }};

}  // namespace
}  // namespace tandem::tools
