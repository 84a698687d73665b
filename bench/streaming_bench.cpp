// Streaming-executor benchmark (issue 7): greedy decode tokens/s of one model with every
// expert in RAM (the mapping, no limit) beside the same model under --mem-limit (experts
// streamed with io_uring/O_DIRECT into the RAM cache, router-driven prefetch), measured in the
// same run, plus the memory-limited run's cache hit rate, storage MB per token, peak RSS
// (anonymous + file, sampled per token) and the fraction of storage-read time hidden under
// other work (from the trace, trace.h read_overlap).
//
// The limited run goes first, so that its RSS is not inflated by the unlimited run's pages;
// the unlimited run starts with the file read once into the page cache (warm, as a model that
// fits in RAM runs).
//
// Usage: streaming_bench --model=PATH [--mem-limit=1G] [--tokens=32] [--prompt=16]
//                        [--threads=0] [--policy=lru|frequency] [--profile=PROFILE.json]
//                        [--no-prefetch] [--trace=FILE]
// --profile gives the frequency policy its prior (the profile's per-expert activation
// probabilities, as `tandem run --cache-policy frequency --profile` does).
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernel_table.h"
#include "runtime/forward_ops_fast.h"
#include "planner/profile.h"
#include "runtime/cache_policy.h"
#include "runtime/mem_stats.h"
#include "runtime/model.h"
#include "runtime/streaming_executor.h"

namespace {

using namespace tandem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string model;
  uint64_t mem_limit = 1ull << 30;
  int tokens = 32;
  int prompt = 16;
  int threads = 0;
  CachePolicyKind policy = CachePolicyKind::lru;
  bool prefetch = true;
  std::string trace;
  std::string profile;
  std::vector<double> prior;
};

struct Figures {
  double tokens_per_s = 0;
  double hit_rate = 0;
  double storage_mb_per_token = 0;
  double hidden = 1;
  uint64_t read_us = 0;
  uint64_t peak_anon = 0, peak_file = 0, peak_sum = 0;
  uint64_t waits = 0;
  std::string memory;
};

Result<Figures> run(const Model& model, const Args& a, bool limited) {
  StreamingExecutorOptions o;
  o.n_ctx = uint32_t(a.prompt + a.tokens + 8);
  o.n_ubatch = 512;
  o.n_threads = a.threads;
  o.policy = a.policy;
  o.frequency.prior = a.prior;
  o.prefetch = a.prefetch;
  o.make_base_ops = [] { return make_fast_cpu_ops(cpu::kernels()); };
  if (limited) {
    o.mem_limit = a.mem_limit;
    o.keep_trace_in_memory = true;
    o.trace = a.trace;
  }
  TANDEM_ASSIGN_OR_RETURN(auto ex, make_streaming_executor_typed(model, o));
  Figures f;
  f.memory = ex->memory_lines()[0].detail;
  std::vector<int32_t> prompt;
  for (int i = 0; i < a.prompt; ++i)
    prompt.push_back(int32_t((i * 7919 + 13) % int(model.shape().n_vocab)));
  std::vector<float> lg;
  TANDEM_RETURN_IF_ERROR(ex->eval(prompt, LogitsRows::last, lg));
  ex->reset_counters();
  MemPeakTracker peak;
  uint64_t peak_sum = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < a.tokens; ++i) {
    const int32_t t = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
    TANDEM_RETURN_IF_ERROR(ex->eval(std::span<const int32_t>(&t, 1), LogitsRows::last, lg));
    auto m = peak.sample();
    if (m.ok()) peak_sum = std::max(peak_sum, m->rss_anon_bytes + m->rss_file_bytes);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const ExecutorCounters c = ex->counters();
  f.tokens_per_s = a.tokens / s;
  f.hit_rate =
      c.ram_hits + c.ram_misses > 0 ? double(c.ram_hits) / double(c.ram_hits + c.ram_misses) : 1.0;
  f.storage_mb_per_token = double(c.storage_bytes) / 1e6 / a.tokens;
  f.peak_anon = peak.peak().rss_anon_bytes;
  f.peak_file = peak.peak().rss_file_bytes;
  f.peak_sum = peak_sum;
  f.waits = ex->ops_stats().waits;
  if (ex->trace() != nullptr) {
    const ReadOverlap r = read_overlap(ex->trace()->events());
    f.hidden = r.hidden_fraction();
    f.read_us = uint64_t(r.read_us);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto val = [&](const char* k) -> const char* {
      const size_t n = std::strlen(k);
      return s.compare(0, n, k) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = val("--model="))
      a.model = v;
    else if (const char* v2 = val("--mem-limit=")) {
      auto r = parse_mem_size(v2);
      if (!r.ok()) {
        std::fprintf(stderr, "%s\n", r.status().message().c_str());
        return 2;
      }
      a.mem_limit = *r;
    } else if (const char* v3 = val("--tokens="))
      a.tokens = std::atoi(v3);
    else if (const char* v4 = val("--prompt="))
      a.prompt = std::atoi(v4);
    else if (const char* v5 = val("--threads="))
      a.threads = std::atoi(v5);
    else if (const char* v6 = val("--policy="))
      a.policy =
          std::strcmp(v6, "frequency") == 0 ? CachePolicyKind::frequency : CachePolicyKind::lru;
    else if (s == "--no-prefetch")
      a.prefetch = false;
    else if (const char* v7 = val("--trace="))
      a.trace = v7;
    else if (const char* v8 = val("--profile="))
      a.profile = v8;
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (a.model.empty() || a.tokens <= 0 || a.prompt <= 0) {
    std::fprintf(
        stderr,
        "usage: streaming_bench --model=PATH [--mem-limit=1G] [--tokens=32] [--prompt=16] ...\n");
    return 2;
  }
  auto model = Model::load(a.model);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().message().c_str());
    return 1;
  }
  if (!a.profile.empty()) {
    auto profile = load_profile(a.profile);
    if (!profile.ok()) {
      std::fprintf(stderr, "%s\n", profile.status().message().c_str());
      return 1;
    }
    if (!profile->model_hash.empty() && profile->model_hash != model->content_hash()) {
      std::fprintf(stderr, "%s: made for model hash %s, not %s\n", a.profile.c_str(), profile->model_hash.c_str(),
                   model->content_hash().c_str());
      return 1;
    }
    auto prior = expert_priors_from_profile(*profile, model->shape().n_layer, model->shape().n_expert);
    if (!prior.ok()) {
      std::fprintf(stderr, "%s: %s\n", a.profile.c_str(), prior.status().message().c_str());
      return 1;
    }
    a.prior = std::move(*prior);
  }
  utsname u{};
  ::uname(&u);
  std::printf(
      "model %s (%s), %d decode tokens after a %d-token prompt, threads %d, %s, kernel %s\n",
      a.model.c_str(), model->name().c_str(), a.tokens, a.prompt, a.threads,
      a.policy == CachePolicyKind::lru ? "lru" : a.prior.empty() ? "frequency (no prior)" : "frequency (profile prior)",
      u.release);
  auto lim = run(*model, a, true);
  if (!lim.ok()) {
    std::fprintf(stderr, "limited run: %s\n", lim.status().message().c_str());
    return 1;
  }
  // The unlimited run reads weights through the mapping: warm the page cache first (the
  // limited run dropped it), so it runs as a model that fits in RAM does.
  {
    FILE* f = std::fopen(a.model.c_str(), "rb");
    std::vector<char> buf(16u << 20);
    while (f != nullptr && std::fread(buf.data(), 1, buf.size(), f) == buf.size()) {
    }
    if (f != nullptr) std::fclose(f);
  }
  auto ram = run(*model, a, false);
  if (!ram.ok()) {
    std::fprintf(stderr, "unlimited run: %s\n", ram.status().message().c_str());
    return 1;
  }
  auto mib = [](uint64_t b) { return double(b) / (1024.0 * 1024.0); };
  std::printf("%-22s %10s %8s %12s %10s %14s %14s %8s\n", "run", "tok/s", "hit", "storage_MB/t",
              "hidden", "peak_anon_MiB", "peak_file_MiB", "pct_ram");
  std::printf("%-22s %10.2f %8s %12s %10s %14.1f %14.1f %8.1f\n", "no limit (all ram)",
              ram->tokens_per_s, "-", "-", "-", mib(ram->peak_anon), mib(ram->peak_file), 100.0);
  std::printf("%-22s %10.2f %7.1f%% %12.1f %9.1f%% %14.1f %14.1f %8.1f\n",
              ("mem-limit " + std::to_string(a.mem_limit >> 20) + " MiB").c_str(),
              lim->tokens_per_s, 100 * lim->hit_rate, lim->storage_mb_per_token, 100 * lim->hidden,
              mib(lim->peak_anon), mib(lim->peak_file),
              100 * lim->tokens_per_s / ram->tokens_per_s);
  std::printf(
      "limited: peak anon+file %.1f MiB (limit %.1f MiB), %llu waits, read time %.1f ms; %s\n",
      mib(lim->peak_sum), mib(a.mem_limit), (unsigned long long)lim->waits, lim->read_us / 1000.0,
      lim->memory.c_str());
  return 0;
}
