// CPU part of calibrate (runtime/calibrate.h): read bandwidth and expert FFN times per Isa and
// thread count.
#include <sched.h>

#include <fstream>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/cpu_features.h"
#include "cpu/expert_ffn.h"
#include "cpu/kernel_table.h"
#include "cpu/mem_bandwidth.h"
#include "cpu/thread_pool.h"
#include "runtime/calibrate_probes.h"

namespace tandem::calibrate_detail {
namespace {

using Clock = std::chrono::steady_clock;

// Distinct (package, core) pairs of /proc/cpuinfo; the thread count where it has none (arm).
uint32_t count_physical_cores(uint32_t n_threads) {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  int package = 0;
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const char* value = line.c_str() + colon + 1;
    if (key == "physical id") package = std::atoi(value);
    if (key == "core id") cores.insert({package, std::atoi(value)});
  }
  if (cores.empty()) return n_threads;
  return std::min<uint32_t>(static_cast<uint32_t>(cores.size()), n_threads);
}

uint32_t count_usable_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<uint32_t>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// 1, 2, 4, ... below `all`, then `all`.
std::vector<int> thread_counts(int all) {
  std::vector<int> v;
  for (int t = 1; t < all; t *= 2) v.push_back(t);
  v.push_back(all);
  return v;
}

// A pool of synthetic experts bigger than the last-level cache, so each timed call reads its
// weights from RAM as decode does (an expert's slabs are a few MB: it would sit in L2/L3).
struct ExpertPool {
  int64_t n_embd = 0, n_ff = 0;
  DType dtype = DType::q4_0;
  uint64_t slab = 0;
  std::unique_ptr<uint8_t[]> bytes;  // per expert: gate, up, down slabs
  int64_t n_expert = 0;

  cpu::ExpertFfnWeights weights(int64_t e) const {
    const uint8_t* base = bytes.get() + static_cast<uint64_t>(e) * 3 * slab;
    cpu::ExpertFfnWeights w;
    w.gate = TensorView::contiguous(base, dtype, {n_embd, n_ff, 1, 1}, "calibrate.ffn_gate");
    w.up = TensorView::contiguous(base + slab, dtype, {n_embd, n_ff, 1, 1}, "calibrate.ffn_up");
    w.down = TensorView::contiguous(base + 2 * slab, dtype, {n_ff, n_embd, 1, 1}, "calibrate.ffn_down");
    w.down_layout = DownLayout::standard;
    return w;
  }
};

Result<ExpertPool> make_pool(const CalibrateOptions& o) {
  ExpertPool p;
  p.n_embd = o.shape.n_embd;
  p.n_ff = o.shape.n_ff_exp;
  p.dtype = o.expert_dtype;
  p.slab = expert_slab_bytes(o);
  const uint64_t pool_bytes = o.quick ? (24ull << 20) : (384ull << 20);
  p.n_expert = static_cast<int64_t>(std::max<uint64_t>(2, pool_bytes / (3 * p.slab)));
  p.bytes.reset(new (std::nothrow) uint8_t[static_cast<size_t>(p.n_expert) * 3 * p.slab]);
  if (!p.bytes) {
    return make_error(ErrorCode::out_of_memory, "calibrate: cannot allocate {} bytes of synthetic experts",
                      static_cast<uint64_t>(p.n_expert) * 3 * p.slab);
  }
  for (int64_t e = 0; e < p.n_expert; ++e) {
    uint8_t* base = p.bytes.get() + static_cast<uint64_t>(e) * 3 * p.slab;
    fill_synthetic_slab(p.dtype, base, p.slab, 3 * e, /*all_positive=*/true);
    fill_synthetic_slab(p.dtype, base + p.slab, p.slab, 3 * e + 1, false);
    fill_synthetic_slab(p.dtype, base + 2 * p.slab, p.slab, 3 * e + 2, false);
  }
  return p;
}

struct FfnTimes {
  double dense_us = 0, gate_us = 0, gflops = 0;
};

// Median time per call of expert_ffn on `n_tok` tokens, cycling through the pool.
Result<double> time_ffn(const cpu::KernelTable& kt, const ExpertPool& pool, cpu::FfnMode mode, int64_t n_tok,
                        const cpu::ChunkRunner& runner, int calls) {
  // x = -1 everywhere: with the all-positive gate no neuron is active (sparse = gate only).
  std::vector<float> x(static_cast<size_t>(n_tok * pool.n_embd), -1.0f);
  std::vector<float> route(static_cast<size_t>(n_tok), 1.0f);
  std::vector<float> acc(x.size(), 0.0f);
  cpu::ExpertFfnBatch batch{x.data(), pool.n_embd, n_tok, route.data(), acc.data(), pool.n_embd};
  cpu::ExpertFfnWorkspace ws;
  std::vector<double> t;
  int64_t e = 0;
  for (int i = 0; i < calls + 1; ++i) {
    const auto t0 = Clock::now();
    TANDEM_RETURN_IF_ERROR(cpu::expert_ffn(kt, pool.weights(e), mode, batch, ws, runner));
    if (i > 0) t.push_back(seconds_since(t0) * 1e6);  // the first call warms the workspace
    e = (e + 1) % pool.n_expert;
  }
  return median(std::move(t));
}

Result<FfnTimes> time_expert(const cpu::KernelTable& kt, const ExpertPool& pool, const cpu::ChunkRunner& runner,
                             bool quick) {
  FfnTimes f;
  const int calls = quick ? 4 : static_cast<int>(std::min<int64_t>(64, 2 * pool.n_expert));
  TANDEM_ASSIGN_OR_RETURN(f.dense_us, time_ffn(kt, pool, cpu::FfnMode::dense, 1, runner, calls));
  TANDEM_ASSIGN_OR_RETURN(f.gate_us, time_ffn(kt, pool, cpu::FfnMode::sparse, 1, runner, calls));
  TANDEM_ASSIGN_OR_RETURN(double batch_us, time_ffn(kt, pool, cpu::FfnMode::dense, k_prefill_tokens, runner,
                                                    quick ? 2 : 6));
  const double flop = 6.0 * static_cast<double>(pool.n_embd) * static_cast<double>(pool.n_ff) *
                      static_cast<double>(k_prefill_tokens);
  f.gflops = batch_us > 0 ? flop / (batch_us * 1e3) : 0;
  return f;
}

}  // namespace

Status probe_cpu(const CalibrateOptions& o, HardwareProfile& hw) {
  const uint32_t n_threads = count_usable_threads();
  hw.cpu.name = cpu::cpu_model_name();
  hw.cpu.n_threads = n_threads;
  hw.cpu.n_cores = count_physical_cores(n_threads);
  const int all = o.max_threads > 0 ? std::min<int>(o.max_threads, static_cast<int>(n_threads))
                                    : static_cast<int>(n_threads);
  progress(o, fmt::format("cpu: {} ({} cores, {} threads, features {})", hw.cpu.name, hw.cpu.n_cores, n_threads,
                          cpu::cpu_features().summary()));
  TANDEM_ASSIGN_OR_RETURN(ExpertPool pool, make_pool(o));
  const uint64_t bw_bytes = o.quick ? (32ull << 20) : (512ull << 20);
  const int reps = o.quick ? 2 : 5;
  for (cpu::Isa isa : cpu::k_all_isas) {
    const cpu::KernelTable* kt = cpu::kernels_for(isa);
    if (!kt || !cpu::read_sum_for(isa)) continue;
    for (int nt : thread_counts(all)) {
      TANDEM_ASSIGN_OR_RETURN(cpu::BandwidthResult bw, cpu::measure_read_bandwidth(isa, nt, bw_bytes, reps));
      std::unique_ptr<cpu::ChunkRunner> runner;
      if (nt == 1) runner = std::make_unique<cpu::SerialRunner>();
      else runner = std::make_unique<cpu::ThreadPool>(nt);
      TANDEM_ASSIGN_OR_RETURN(FfnTimes f, time_expert(*kt, pool, *runner, o.quick));
      CpuIsaPerf e;
      e.isa = std::string(cpu::isa_name(isa));
      e.n_threads = static_cast<uint32_t>(nt);
      e.read_bandwidth_gbps = bw.gbps;
      e.compute_gflops = f.gflops;
      e.expert_ffn_dense_us = f.dense_us;
      // The schema requires gate <= dense; timing noise on a loaded machine can invert two
      // close medians, and the gate-only path never reads more than the dense one.
      e.expert_ffn_gate_us = std::min(f.gate_us, f.dense_us);
      progress(o, fmt::format("cpu {} x{}: read {:.2f} GB/s, expert ffn dense {:.1f} us, gate only {:.1f} us, "
                              "{:.1f} GFLOP/s at {} tokens",
                              e.isa, nt, e.read_bandwidth_gbps, e.expert_ffn_dense_us, f.gate_us, e.compute_gflops,
                              k_prefill_tokens));
      hw.cpu.isa.push_back(std::move(e));
    }
  }
  if (hw.cpu.isa.empty()) return make_error(ErrorCode::internal, "calibrate: no CPU isa could be measured");
  return Status::success();
}

uint64_t expert_slab_bytes(const CalibrateOptions& o) {
  return static_cast<uint64_t>(o.shape.n_ff_exp) * dtype_row_size(o.expert_dtype, o.shape.n_embd);
}

void fill_synthetic_slab(DType dtype, uint8_t* dst, uint64_t bytes, uint64_t seed, bool all_positive) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  const uint16_t d = fp32_to_fp16(1.0f / 128.0f);
  if (dtype == DType::q4_0) {
    auto* b = reinterpret_cast<block_q4_0*>(dst);
    const uint64_t n = bytes / sizeof(block_q4_0);
    for (uint64_t i = 0; i < n; ++i) {
      b[i].d = d;
      for (auto& q : b[i].qs) q = all_positive ? 0xFF : static_cast<uint8_t>(rng());
    }
  } else {
    auto* b = reinterpret_cast<block_q8_0*>(dst);
    const uint64_t n = bytes / sizeof(block_q8_0);
    for (uint64_t i = 0; i < n; ++i) {
      b[i].d = d;
      for (auto& q : b[i].qs) q = all_positive ? int8_t{127} : static_cast<int8_t>(rng());
    }
  }
}

}  // namespace tandem::calibrate_detail
