// Options shared by `tandem run`, `chat` and `perplexity`, with llama.cpp's flag names.
//
// llama.cpp spells some flags with one dash and several letters (-ub, -ctk, -ctv, -sys),
// which CLI11 cannot declare, and which it would read as -c/-s with an attached value were
// those declared. So -c and -s are not declared to CLI11 either (only --ctx-size, --seed):
// the subcommands allow extras and take_llama_flags() reads -c, -s, -ub, -ctk, -ctv and -sys
// (each followed by its value) from the leftovers. Anything else left over is an error.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "core/dtype.h"
#include "size_arg.h"
#include "planner/plan.h"
#include "auto_plan_cli.h"
#include "runtime/session.h"

namespace tandem::tools {

struct CommonOptions {
  std::string model;
  uint32_t n_ctx = 4096;
  int n_threads = 0;
  uint32_t n_ubatch = 512;
  std::string cache_type = "f16";
  std::string system_prompt;
  SamplerParams sampling;
  // Where the work runs (runtime/executor_factory.h).
  std::string placement = "auto";  // executor_factory.h: auto = cpu, or the plan's (hybrid when it uses a GPU)
  std::string device;
  std::string cpu_ops = "fast";
  std::string plan;
  bool auto_plan = false;  // --auto: plan now (runtime/auto_plan.h) and run as with --plan
  std::string hardware;    // --hardware for --auto
  std::string mem_limit;
  std::string trace;
  std::string cache_policy = "lru";
  std::string profile;  // the frequency policy's prior
  bool transpose_down = false;  // plain cpu placement only: make_executor refuses it elsewhere
  bool no_mmap = false;         // --no-mmap: Model::load with FileLoad::read
  bool no_repack = false;       // --no-repack: keep the file's expert up/down layout (cpu placement)
};

// with_trace: false for commands whose own --trace means something else (profile: the routing trace).
inline void add_model_options(CLI::App& sub, CommonOptions& o, bool with_trace = true) {
  sub.add_option("-m,--model", o.model, "GGUF model file (default: $TANDEM_MODEL or models/default.gguf)");
  sub.add_option("--ctx-size", o.n_ctx, "context size in tokens, 0 = the model's (also -c N)")->capture_default_str();
  sub.add_option("-t,--threads", o.n_threads, "CPU threads (0 = all)")->capture_default_str();
  sub.add_option("--ubatch,--ubatch-size", o.n_ubatch, "tokens per ubatch (also -ub N)")->capture_default_str();
  sub.add_option("--cache-type-k,--cache-type-v", o.cache_type, "KV cache type for K and V: f16 or f32 (also -ctk/-ctv)")
      ->capture_default_str();
  sub.add_option("--placement", o.placement,
                 "where layers and experts run: cpu, gpu, hybrid or auto (with --plan: hybrid when the plan puts anything on "
                 "a GPU, else cpu running the plan's RAM and storage tiers; without: cpu)")
      ->capture_default_str();
  sub.add_option("--device", o.device,
                 "Vulkan device for gpu/hybrid: an index from `tandem devices`, or cpu for a software device "
                 "(default: the best discrete GPU, else the integrated one)");
  sub.add_option("--cpu-ops", o.cpu_ops, "CPU kernels: fast (SIMD kernel table, TANDEM_MAX_ISA caps it) or plain")
      ->capture_default_str();
  sub.add_option("--plan", o.plan, "placement plan JSON from `tandem plan` (made for this model); with --placement cpu its GPU tiers "
                 "run on the CPU");
  sub.add_flag("--auto", o.auto_plan,
               "make the plan now, as `tandem plan` would, and run it as with --plan: usage profile "
               "<model stem>.profile.json beside the model or here (else a flat prior), hardware profile --hardware, "
               "$TANDEM_HARDWARE or ${XDG_CACHE_HOME:-~/.cache}/tandem/hardware.json (measured by a quick calibration "
               "when missing), RAM budget --mem-limit or all RAM. The plan is written to the cache as "
               "auto-<model hash>.plan.json");
  sub.add_option("--hardware", o.hardware, "with --auto: hardware profile JSON from `tandem calibrate`");
  sub.add_option("--mem-limit", o.mem_limit,
                 "keep resident memory under SIZE (e.g. 1G): experts that do not fit are streamed from the file");
  sub.add_flag("--transpose-down", o.transpose_down,
               "transpose a standard-layout ffn_down_exps in memory at load, so the sparse FFN reads only active "
               "neurons' rows (requantized: see `tandem convert --help` for the precision cost). Plain cpu placement "
               "only (an error with gpu, hybrid, --mem-limit, --plan or --trace; there use `tandem convert "
               "--transpose-down IN OUT` once); a no-op on a file already transposed");
  sub.add_flag("--no-mmap", o.no_mmap,
               "read the model into memory (anonymous, transparent huge pages) instead of mapping it, as llama.cpp's"
               " --no-mmap: slower start and all of it resident, but fewer TLB misses on the weights. The cpu placeme"
               "nt's repack (see --no-repack) already puts the weights it rewrites in huge pages and is skipped with "
               "--no-mmap, so there it no longer helps (bench/RESULTS.md, session 8). Not with --mem-limit or a plan"
               "'s storage tier (streaming needs the mapping)");
  sub.add_flag("--no-repack", o.no_repack,
               "keep the file's layout of the weights on the cpu placement. By default a model mapped from its file "
               "is repacked in memory at load, in transparent huge pages (the file is not changed; same results, "
               "bench/RESULTS.md): each neuron's expert up and down rows side by side (transposed down: one contiguous "
               "read per active neuron), and with the AVX2 and AVX-512 kernels the q4_0 matrices as q4_0x16 and the down rows "
               "as q4_0_split (no byte shuffles in the kernels). Skipped anyway with --no-mmap or --transpose-down");
  sub.add_option("--cache-policy", o.cache_policy,
                 "replacement policy of the streamed experts' RAM cache: lru or frequency (LRFU with the profile's prior)")
      ->capture_default_str();
  if (with_trace) {  // the profile command writes a profile: no prior to read there
    sub.add_option("--profile", o.profile,
                   "model profile from `tandem profile`: its activation probabilities are the prior of "
                   "--cache-policy frequency");
    sub.add_option("--trace", o.trace, "write a Chrome trace-event JSON of the run here (Perfetto, chrome://tracing)");
  }
  sub.allow_extras();
}

inline void add_sampling_options(CLI::App& sub, CommonOptions& o) {
  SamplerParams& s = o.sampling;
  sub.add_option("--temp", s.temp, "temperature (<= 0: greedy)")->capture_default_str();
  sub.add_option("--top-k", s.top_k, "top-k sampling (<= 0: off)")->capture_default_str();
  sub.add_option("--top-p", s.top_p, "top-p sampling (1: off)")->capture_default_str();
  sub.add_option("--min-p", s.min_p, "min-p sampling (0: off)")->capture_default_str();
  sub.add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)")->capture_default_str();
  sub.add_option("--repeat-last-n", s.repeat_last_n, "tokens the penalty looks back (0: off, -1: all)")
      ->capture_default_str();
  sub.add_option("--seed", s.seed, "random seed (also -s N; default: random)");
}

// Takes -c N, -s N, -ub N, -ctk T, -ctv T and (when `allow_sys`) -sys TEXT from the leftovers.
inline Status take_llama_flags(const CLI::App& sub, CommonOptions& o, bool allow_sys) {
  const std::vector<std::string> rest = sub.remaining();
  auto number = [](const std::string& flag, const std::string& v, unsigned long lo, unsigned long hi,
                   uint32_t& out) -> Status {
    size_t used = 0;
    unsigned long n = 0;
    try {
      n = std::stoul(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size() || v[0] == '-' || n < lo || n > hi) {
      return make_error(ErrorCode::invalid_argument, "{}: '{}' is not a number in [{}, {}]", flag, v, lo, hi);
    }
    out = static_cast<uint32_t>(n);
    return Status::success();
  };
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& f = rest[i];
    const bool known = f == "-c" || f == "-s" || f == "-ub" || f == "-ctk" || f == "-ctv" || (allow_sys && f == "-sys");
    if (!known) return make_error(ErrorCode::invalid_argument, "unknown argument '{}' (see --help)", f);
    if (i + 1 >= rest.size()) return make_error(ErrorCode::invalid_argument, "{} needs a value", f);
    const std::string& v = rest[++i];
    if (f == "-c") {
      TANDEM_RETURN_IF_ERROR(number(f, v, 0, 1ul << 24, o.n_ctx));
    } else if (f == "-s") {
      TANDEM_RETURN_IF_ERROR(number(f, v, 0, 0xFFFFFFFFul, o.sampling.seed));
    } else if (f == "-ub") {
      TANDEM_RETURN_IF_ERROR(number(f, v, 1, 1ul << 20, o.n_ubatch));
    } else if (f == "-sys") {
      o.system_prompt = v;
    } else {
      o.cache_type = v;
    }
  }
  return Status::success();
}

inline Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "{}: cannot open the file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

// Resolves the model (creating the default one when no -m was given and it is missing),
// opens the session and prints the resolved options to stderr.
// Where the plan puts each part, and which executor runs it (the README's command 1 shows this).
inline void print_plan_parts(const char* command, const std::string& plan_path, std::string_view placement) {
  auto plan = load_plan(plan_path);
  if (!plan.ok()) return;  // the executor already loaded it; nothing to add
  const Placement& p = plan->placement;
  size_t n[4] = {0, 0, 0, 0};
  for (const auto& layer : p.tiers)
    for (ExpertTier t : layer) ++n[static_cast<size_t>(t)];
  // The hybrid executor runs attention and the head on its GPU whatever the plan says (logged).
  const char* where = placement == "cpu" ? "cpu" : "gpu";
  std::fprintf(stderr,
               "%s: plan %s -> %s executor: attention on %s, output head on %s; experts: %zu GPU-resident, %zu in "
               "%u dynamic GPU slots/layer, %zu in RAM on the CPU, %zu streamed from storage (%u RAM cache "
               "slots/layer); predicted %.2f tokens/s\n",
               command, plan_path.c_str(), std::string(placement).c_str(),
               where, where, n[0], n[1],
               p.n_dynamic_slots, n[2], n[3], p.ram_cache_experts, plan->predicted.tokens_per_s);
  if (placement == "cpu" && n[0] + n[1] > 0) {
    std::fprintf(stderr, "%s: --placement cpu: the plan's %zu GPU-tier experts run on the CPU from RAM\n", command,
                 n[0] + n[1]);
  }
}

// --auto: makes the plan for the model and returns the path it was written to (auto_plan_cli.h).
inline Result<std::filesystem::path> auto_plan_file(const CommonOptions& o, SessionOptions& so, const char* command) {
  AutoPlanOptions ao;
  ao.model_path = so.model_path;
  ao.hardware = o.hardware;
  ao.ram_budget = so.executor.mem_limit;
  ao.n_ctx = so.n_ctx;
  ao.device = o.device.empty() ? "auto" : o.device;
  TANDEM_ASSIGN_OR_RETURN(AutoPlanFile f, auto_plan_for_command(o.auto_plan, o.plan, ao, command));
  // The usage profile the plan came from is also the frequency policy's prior, unless one was given.
  if (o.profile.empty() && o.cache_policy == "frequency" && !f.plan.profile_path.empty()) {
    so.executor.profile = f.plan.profile_path;
  }
  return f.path;
}

inline Result<std::unique_ptr<Session>> open_session(const CommonOptions& o, const char* command) {
  SessionOptions so;
  so.model_path = o.model;
  if (o.model.empty()) {
    so.model_path = default_model_path();
    TANDEM_RETURN_IF_ERROR(ensure_default_model(so.model_path));
  }
  const auto ct = dtype_from_name(o.cache_type);
  if (!ct || (*ct != DType::f16 && *ct != DType::f32)) {
    return make_error(ErrorCode::invalid_argument, "--cache-type-k: '{}' is not supported (f16 or f32)", o.cache_type);
  }
  so.cache_type = *ct;
  so.n_ctx = o.n_ctx;
  so.n_ubatch = o.n_ubatch;
  so.n_threads = o.n_threads;
  so.sampling = o.sampling;
  so.executor.placement = o.placement.empty() ? "auto" : o.placement;
  so.executor.device = o.device;
  so.executor.cpu_ops = o.cpu_ops;
  so.executor.plan = o.plan;
  if (!o.mem_limit.empty()) {
    TANDEM_ASSIGN_OR_RETURN(so.executor.mem_limit, parse_size(o.mem_limit, "--mem-limit"));
  }
  so.executor.trace = o.trace;
  so.executor.cache_policy = o.cache_policy;
  so.executor.profile = o.profile;
  so.executor.transpose_down = o.transpose_down;
  so.executor.repack = !o.no_repack;
  so.use_mmap = !o.no_mmap;
  if (o.auto_plan || !o.hardware.empty()) {
    TANDEM_ASSIGN_OR_RETURN(so.executor.plan, auto_plan_file(o, so, command));
  }
  TANDEM_ASSIGN_OR_RETURN(auto session, Session::open(so));
  const ModelShape& sh = session->model().shape();
  std::fprintf(stderr,
               "%s: model %s (%s: n_layer %u, n_embd %u, n_expert %u/%u, n_vocab %u%s)\n"
               "%s: placement %s, threads %d, ctx %u, ubatch %u, KV cache %s, seed %u\n",
               command, so.model_path.string().c_str(), session->model().name().c_str(), sh.n_layer, sh.n_embd,
               sh.n_expert_used, sh.n_expert, sh.n_vocab, sh.swa ? ", swa" : "", command,
               std::string(session->executor().placement()).c_str(), session->options().n_threads,
               session->executor().n_ctx(), so.n_ubatch, std::string(dtype_name(so.cache_type)).c_str(),
               session->sampler().seed());
  if (!so.executor.plan.empty()) print_plan_parts(command, so.executor.plan.string(), session->executor().placement());
  for (const DeviceMemoryLine& line : session->executor().memory_lines()) {
    std::fprintf(stderr, "%s: %s: %s\n", command, line.device.c_str(), line.detail.c_str());
  }
  return session;
}

// After a run: what the executor's counters say moved where (executor.h ExecutorCounters).
inline void print_work_done(const char* command, const Executor& ex) {
  const ExecutorCounters c = ex.counters();
  if (c.tokens == 0) return;
  const double tok = static_cast<double>(c.tokens);
  auto rate = [](uint64_t hits, uint64_t misses) {
    return hits + misses == 0 ? std::string("-") : fmt::format("{:.3f}", static_cast<double>(hits) / static_cast<double>(hits + misses));
  };
  std::fprintf(stderr,
               "%s: per token: %.1f MB of weights read (%.1f MB experts), %.2f MB from storage, %.2f MB uploaded to "
               "the GPU, %.1f CPU<->GPU syncs; hit rates: RAM cache %s, GPU slots %s\n",
               command, static_cast<double>(c.weight_bytes) / tok / 1e6, static_cast<double>(c.expert_bytes) / tok / 1e6,
               static_cast<double>(c.storage_bytes) / tok / 1e6, static_cast<double>(c.upload_bytes) / tok / 1e6,
               static_cast<double>(c.syncs) / tok, rate(c.ram_hits, c.ram_misses).c_str(),
               rate(c.gpu_hits, c.gpu_misses).c_str());
}

inline void print_timings(const GenerateStats& st) {
  std::fprintf(stderr,
               "\nprompt: %u tokens in %.1f ms, %.2f tokens/s | generation: %u tokens, %.2f tokens/s | "
               "time to first token: %.1f ms | peak RSS: %.1f MiB\n",
               st.n_prompt_eval, st.prompt_seconds * 1e3, st.prompt_tokens_per_second(), st.n_generated,
               st.decode_tokens_per_second(), st.ttft_seconds * 1e3,
               static_cast<double>(peak_rss_bytes()) / (1024.0 * 1024.0));
}

}  // namespace tandem::tools
