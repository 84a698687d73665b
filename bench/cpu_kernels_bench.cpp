// CPU kernel benchmarks against memory bandwidth measured in the same run.
//
// First a read-bandwidth probe (sum of a 1 GiB buffer on the pool's threads), then, per ISA
// the host can run: dense q4_0 GEMV at SmallThinker-4B shapes and the expert FFN (dense and
// ReLU-sparse, both down layouts) at forced 0/60/80% inactivity. Weights rotate through
// ~512 MiB so every call streams from DRAM, as cold experts do. Each row reports
//   GB/s      = weight bytes the call must read / median time
//   pct_probe = GB/s / probe GB/s * 100
// and sparse FFN rows also speedup_vs_dense (same ISA, layout and inactivity). With
// --threads=1 rows also carry cpu_GB/s and cpu_pct_probe: the same ratios per CPU-second of
// the (only) working thread, against the probe measured the same way.
//
// Usage: cpu_kernels_bench [--threads=N] [google-benchmark flags]   (default 2 threads)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <sys/mman.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/cpu_features.h"
#include "cpu/expert_ffn.h"
#include "cpu/kernel_table.h"
#include "cpu/thread_pool.h"

namespace {

using namespace tandem;
using namespace tandem::cpu;
using Clock = std::chrono::steady_clock;

int g_threads = 2;
double g_probe_gbs = 0.0;
std::unique_ptr<ThreadPool> g_pool;
std::map<std::string, double> g_dense_seconds;  // "isa/layout/inactive" -> seconds per call

constexpr size_t k_rotate_bytes = size_t{512} << 20;

// CPU seconds of the calling thread. With --threads=1 every kernel runs on this thread, so
// bytes / CPU seconds is the rate while the thread was actually running: the useful figure
// on a host shared with other jobs, where wall-clock time includes time spent descheduled.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
double g_probe_cpu_gbs = 0.0;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 2 MiB-aligned (TANDEM_BENCH_HUGEPAGES=1: madvise(MADV_HUGEPAGE)), touched (no first-touch faults inside timing) buffer.
struct Arena {
  std::unique_ptr<uint8_t[]> raw;
  uint8_t* data = nullptr;
  size_t size = 0;
  explicit Arena(size_t n) : raw(new uint8_t[n + (size_t{2} << 20)]), size(n) {
    constexpr uintptr_t k_huge = uintptr_t{2} << 20;
    data = raw.get() + (k_huge - reinterpret_cast<uintptr_t>(raw.get()) % k_huge) % k_huge;
    if (std::getenv("TANDEM_BENCH_HUGEPAGES")) madvise(data, n & ~(k_huge - 1), MADV_HUGEPAGE);
  }
};

// n_rows q4_0 rows of k: random nibbles, scales in [0.01, 0.02]; `sign` > 0 / < 0 forces
// every (q - 8) of the row positive / negative (gate rows with a known ReLU outcome).
void fill_q4_rows(uint8_t* p, int64_t n_rows, int64_t k, uint64_t& seed, const std::vector<int8_t>* sign) {
  const int64_t nb = k / 32;
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      auto* blk = reinterpret_cast<block_q4_0*>(p + (r * nb + b) * sizeof(block_q4_0));
      blk->d = fp32_to_fp16(0.01f + 0.01f * static_cast<float>(splitmix(seed) % 100) / 100.0f);
      uint64_t bits = splitmix(seed), bits2 = splitmix(seed);
      for (int j = 0; j < 16; ++j) {
        unsigned v = static_cast<unsigned>(j < 8 ? bits >> (8 * j) : bits2 >> (8 * (j - 8))) & 0xFF;
        if (sign && (*sign)[r] != 0) {
          const unsigned lo = v & 7, hi = (v >> 4) & 7;
          v = (*sign)[r] > 0 ? ((9 + lo % 7) | ((9 + hi % 7) << 4)) : (lo | (hi << 4));
        }
        blk->qs[j] = static_cast<uint8_t>(v);
      }
    }
  }
}

// ---- read-bandwidth probe ----

struct Rate {
  double wall_gbs, cpu_gbs;
};

Rate probe_once(const Arena& a) {
  constexpr int64_t k_chunks = 256;
  const size_t per = a.size / k_chunks / sizeof(uint64_t);
  std::vector<uint64_t> sums(k_chunks);
  const auto t0 = Clock::now();
  const double c0 = thread_cpu_seconds();
  g_pool->parallel_for(k_chunks, [&](int64_t c) {
    const auto* p = reinterpret_cast<const uint64_t*>(a.data) + c * per;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < per; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    sums[c] = s0 + s1 + s2 + s3;
  });
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cs = thread_cpu_seconds() - c0;
  benchmark::DoNotOptimize(std::accumulate(sums.begin(), sums.end(), uint64_t{0}));
  return {static_cast<double>(a.size) / s / 1e9, static_cast<double>(a.size) / cs / 1e9};
}

void BM_read_bandwidth_probe(benchmark::State& state) {
  static Arena a(size_t{1} << 30);
  static bool filled = false;
  if (!filled) {
    std::memset(a.data, 1, a.size);
    filled = true;
  }
  double best = 0, best_cpu = 0;
  for (auto _ : state) {
    const Rate r = probe_once(a);
    best = std::max(best, r.wall_gbs);
    best_cpu = std::max(best_cpu, r.cpu_gbs);
  }
  state.counters["GB/s"] = best;
  if (g_threads == 1) state.counters["cpu_GB/s"] = best_cpu;
  state.counters["threads"] = g_threads;
}

// ---- dense q4_0 GEMV ----

void BM_gemv_q4_0(benchmark::State& state, const KernelTable* kt, int64_t rows, int64_t k) {
  const size_t mat = dtype_row_size(DType::q4_0, k) * static_cast<size_t>(rows);
  const int64_t n_mats = std::max<int64_t>(1, static_cast<int64_t>(k_rotate_bytes / mat));
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Arena>> arenas;
  auto& arena = arenas[{rows, k}];
  if (!arena) {
    arena = std::make_unique<Arena>(mat * static_cast<size_t>(n_mats));
    uint64_t seed = 1;
    fill_q4_rows(arena->data, rows * n_mats, k, seed, nullptr);
  }
  std::vector<float> x(static_cast<size_t>(k));
  uint64_t seed = 2;
  for (auto& v : x) v = static_cast<float>(splitmix(seed) % 2000) / 1000.0f - 1.0f;
  std::vector<uint8_t> xq(dtype_row_size(DType::q8_0, k));
  std::vector<float> y(static_cast<size_t>(rows));
  const size_t rb = dtype_row_size(DType::q4_0, k);
  constexpr int64_t k_rows_per_chunk = 64;
  const int64_t n_chunks = (rows + k_rows_per_chunk - 1) / k_rows_per_chunk;
  int64_t m = 0;
  double total = 0, cpu = 0;
  for (auto _ : state) {
    const uint8_t* w = arena->data + static_cast<size_t>(m) * mat;
    m = (m + 1) % n_mats;
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    kt->quantize_row_q8_0(x.data(), xq.data(), k);
    g_pool->parallel_for(n_chunks, [&](int64_t c) {
      const int64_t r0 = c * k_rows_per_chunk, r1 = std::min(rows, r0 + k_rows_per_chunk);
      kt->gemv_q4_0_q8_0(k, r1 - r0, w + r0 * rb, rb, xq.data(), y.data() + r0);
    });
    total += std::chrono::duration<double>(Clock::now() - t0).count();
    cpu += thread_cpu_seconds() - c0;
    benchmark::DoNotOptimize(y.data());
  }
  const double gbs = static_cast<double>(mat) * static_cast<double>(state.iterations()) / total / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["pct_probe"] = 100.0 * gbs / g_probe_gbs;
  if (g_threads == 1) {
    const double cgbs = static_cast<double>(mat) * static_cast<double>(state.iterations()) / cpu / 1e9;
    state.counters["cpu_GB/s"] = cgbs;
    state.counters["cpu_pct_probe"] = 100.0 * cgbs / g_probe_cpu_gbs;
  }
}

// Same kernel on one thread with a 1536x256 matrix that stays in L2: the kernel's compute
// ceiling, to show the DRAM rows above are memory-bound rather than compute-bound.
void BM_gemv_q4_0_hot(benchmark::State& state, const KernelTable* kt) {
  const int64_t rows = 256, k = 1536;
  const size_t rb = dtype_row_size(DType::q4_0, k);
  Arena a(rb * rows);
  uint64_t seed = 5;
  fill_q4_rows(a.data, rows, k, seed, nullptr);
  std::vector<float> x(static_cast<size_t>(k), 0.5f), y(static_cast<size_t>(rows));
  std::vector<uint8_t> xq(dtype_row_size(DType::q8_0, k));
  kt->quantize_row_q8_0(x.data(), xq.data(), k);
  for (auto _ : state) {
    kt->gemv_q4_0_q8_0(k, rows, a.data, rb, xq.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["read_rate"] = benchmark::Counter(static_cast<double>(rb * rows), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// ---- expert FFN ----

struct FfnSet {
  int64_t n_embd = 1536, n_ff = 768, n_expert = 0;
  size_t mat = 0;
  std::unique_ptr<Arena> gate[3], up, down;  // gate per inactivity level 0 / 60 / 80 %
};

constexpr double k_inactive[3] = {0.0, 0.6, 0.8};

FfnSet& ffn_set() {
  static FfnSet s;
  if (s.up) return s;
  s.mat = dtype_row_size(DType::q4_0, s.n_embd) * static_cast<size_t>(s.n_ff);
  s.n_expert = static_cast<int64_t>(k_rotate_bytes / 2 / s.mat);  // gate+up+down >= 768 MiB streamed
  uint64_t seed = 3;
  for (int l = 0; l < 3; ++l) {
    std::vector<int8_t> sign(static_cast<size_t>(s.n_ff * s.n_expert), 1);
    for (int64_t e = 0; e < s.n_expert; ++e) {
      std::vector<int64_t> perm(static_cast<size_t>(s.n_ff));
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t i = s.n_ff - 1; i > 0; --i) std::swap(perm[i], perm[splitmix(seed) % static_cast<uint64_t>(i + 1)]);
      const auto n_off = static_cast<int64_t>(k_inactive[l] * static_cast<double>(s.n_ff) + 0.5);
      for (int64_t i = 0; i < n_off; ++i) sign[static_cast<size_t>(e * s.n_ff + perm[i])] = -1;
    }
    s.gate[l] = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
    fill_q4_rows(s.gate[l]->data, s.n_ff * s.n_expert, s.n_embd, seed, &sign);
  }
  s.up = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
  s.down = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
  fill_q4_rows(s.up->data, s.n_ff * s.n_expert, s.n_embd, seed, nullptr);
  fill_q4_rows(s.down->data, s.n_ff * s.n_expert, s.n_embd, seed, nullptr);
  return s;
}

void BM_expert_ffn(benchmark::State& state, const KernelTable* kt, DownLayout layout, FfnMode mode, int level,
                   int64_t n_tok) {
  FfnSet& s = ffn_set();
  const int64_t d = s.n_embd, f = s.n_ff;
  const auto n = static_cast<size_t>(n_tok * d);
  auto x = std::make_unique<float[]>(n), acc = std::make_unique<float[]>(n);
  auto rw = std::make_unique<float[]>(static_cast<size_t>(n_tok));
  uint64_t seed = 4;
  for (size_t i = 0; i < n; ++i) {
    x[i] = 0.1f + static_cast<float>(splitmix(seed) % 900) / 1000.0f;  // positive: the gate rows set ReLU
    acc[i] = 0.0f;
  }
  for (int64_t t = 0; t < n_tok; ++t) rw[t] = 0.5f;
  ExpertFfnWorkspace ws;
  ExpertFfnStats st;
  int64_t e = 0;
  double total = 0, cpu = 0, bytes = 0, active = 0;
  for (auto _ : state) {
    ExpertFfnWeights w;
    const size_t off = static_cast<size_t>(e) * s.mat;
    e = (e + 1) % s.n_expert;
    w.gate = TensorView::contiguous(s.gate[level]->data + off, DType::q4_0, {d, f, 1, 1});
    w.up = TensorView::contiguous(s.up->data + off, DType::q4_0, {d, f, 1, 1});
    w.down = layout == DownLayout::transposed
                 ? TensorView::contiguous(s.down->data + off, DType::q4_0, {d, f, 1, 1})
                 : TensorView::contiguous(s.down->data + off, DType::q4_0, {f, d, 1, 1});
    w.down_layout = layout;
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    const Status status = expert_ffn(*kt, w, mode, ExpertFfnBatch{x.get(), d, n_tok, rw.get(), acc.get(), d}, ws,
                                     *g_pool, &st);
    total += std::chrono::duration<double>(Clock::now() - t0).count();
    cpu += thread_cpu_seconds() - c0;
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    bytes += static_cast<double>(st.bytes_read);
    active += static_cast<double>(st.n_active);
  }
  const double calls = static_cast<double>(state.iterations());
  const double gbs = bytes / total / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["pct_probe"] = 100.0 * gbs / g_probe_gbs;
  state.counters["inactive_pct"] = 100.0 * (1.0 - active / calls / static_cast<double>(f));
  state.counters["us_per_call"] = 1e6 * total / calls;
  if (g_threads == 1) {
    state.counters["cpu_GB/s"] = bytes / cpu / 1e9;
    state.counters["cpu_pct_probe"] = 100.0 * bytes / cpu / 1e9 / g_probe_cpu_gbs;
    state.counters["cpu_us_per_call"] = 1e6 * cpu / calls;
  }
  const std::string key = std::string(isa_name(kt->isa)) + (layout == DownLayout::transposed ? "/t/" : "/s/") +
                          std::to_string(level) + "/" + std::to_string(n_tok);
  if (mode == FfnMode::dense) {
    g_dense_seconds[key] = (g_threads == 1 ? cpu : total) / calls;
  } else if (g_dense_seconds.count(key)) {
    state.counters["speedup_vs_dense"] = g_dense_seconds[key] / ((g_threads == 1 ? cpu : total) / calls);
  }
}

std::string git_commit() {
  std::string dir = __FILE__;
  dir = dir.substr(0, dir.find_last_of('/'));
  std::string cmd = "git -C '" + dir + "' rev-parse --short HEAD 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[64];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      g_threads = std::max(1, std::atoi(argv[i] + 10));
    } else {
      args.push_back(argv[i]);
    }
  }
  int n_args = static_cast<int>(args.size());
  g_pool = std::make_unique<ThreadPool>(g_threads);

  {  // The probe runs first so every row can be reported against it.
    Arena a(size_t{1} << 30);
    std::memset(a.data, 1, a.size);
    std::vector<double> r, rc;
    for (int i = 0; i < 5; ++i) {
      const Rate x = probe_once(a);
      r.push_back(x.wall_gbs);
      rc.push_back(x.cpu_gbs);
    }
    std::sort(r.begin(), r.end());
    std::sort(rc.begin(), rc.end());
    g_probe_gbs = r[2];
    g_probe_cpu_gbs = rc[2];
    std::printf("read-bandwidth probe: %.2f GB/s (median of 5 x 1 GiB, %d threads; min %.2f max %.2f)\n", g_probe_gbs,
                g_threads, r.front(), r.back());
    if (g_threads == 1) std::printf("read-bandwidth probe per CPU-second of the thread: %.2f GB/s\n", g_probe_cpu_gbs);
  }
  benchmark::AddCustomContext("commit", git_commit());
  benchmark::AddCustomContext("cpu", cpu_model_name());
  benchmark::AddCustomContext("cpu_features", cpu_features().summary());
  benchmark::AddCustomContext("best_isa", std::string(isa_name(best_isa())));
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("compiler", __VERSION__);
  benchmark::AddCustomContext("probe_GB/s", std::to_string(g_probe_gbs));
  if (g_threads == 1) benchmark::AddCustomContext("probe_cpu_GB/s", std::to_string(g_probe_cpu_gbs));

  benchmark::RegisterBenchmark("read_bandwidth_probe", BM_read_bandwidth_probe)->Iterations(3)->Unit(benchmark::kMillisecond);
  for (Isa isa : k_all_isas) {
    const KernelTable* kt = kernels_for(isa);
    if (!kt) continue;
    const std::string sfx = std::string("__") + std::string(isa_name(isa));
    benchmark::RegisterBenchmark(("gemv_q4_0_q8_0" + sfx + "/attn_1536x1536").c_str(), BM_gemv_q4_0, kt, 1536, 1536)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv_q4_0_q8_0" + sfx + "/ffn_gate_exps_1536x768x32").c_str(), BM_gemv_q4_0, kt,
                                 768 * 32, 1536)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv_q4_0_q8_0" + sfx + "/hot_l2_1536x256_1thread").c_str(), BM_gemv_q4_0_hot, kt)
        ->Unit(benchmark::kMicrosecond);
    for (DownLayout layout : {DownLayout::transposed, DownLayout::standard}) {
      const std::string ln = layout == DownLayout::transposed ? "down_transposed" : "down_standard";
      for (int level = 0; level < 3; ++level) {
        const std::string lv = "/inactive_" + std::to_string(static_cast<int>(k_inactive[level] * 100));
        for (FfnMode mode : {FfnMode::dense, FfnMode::sparse}) {
          const std::string name = std::string(mode == FfnMode::dense ? "expert_ffn_dense" : "expert_ffn_sparse") +
                                   "_q4_0" + sfx + "/" + ln + lv + "/n_tok_1";
          benchmark::RegisterBenchmark(name.c_str(), BM_expert_ffn, kt, layout, mode, level, int64_t{1})
              ->Unit(benchmark::kMicrosecond)->UseRealTime();
        }
      }
    }
  }
  benchmark::Initialize(&n_args, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
