// CPU kernel benchmarks against the read bandwidth measured in the same run.
//
// First the read-bandwidth probes: cpu/mem_bandwidth.h's (every thread sums its share of a
// 512 MiB buffer with the widest loads, best of 7 passes) and a burst probe with the same
// loop timed like the kernels (see burst_probe_gbs), then, for every ISA the host can run, at SmallThinker shapes (runtime/model_maker_presets.cpp: 4b n_embd 1536, n_ff_exp 768,
// 32 experts, vocab 151936; 21b n_embd 2560, n_ff_exp 768, 64 experts):
//   * gemv (1 token) for q4_0, q8_0, f16, bf16, f32 weights, and q4_0 gemm (8 tokens);
//   * one expert's FFN (cpu/expert_ffn.h), dense and ReLU-sparse at 60% / 80% inactive
//     neurons, both down layouts, 1 token and 8 tokens sharing the weight reads;
//   * that expert's reads alone (expert_reads_only, tables that repack): the sparse call's
//     bytes in its order without the arithmetic, the memory system's ceiling for this access
//     pattern; and /contiguous: as many bytes per chunk task read as one stream (the ceiling
//     for a call of this size and shape without the scattered rows).
// Weights rotate through >= 256 MiB so every call streams from DRAM, as cold experts do.
// Rows are split over the thread pool in fixed 64-row chunks (as the runtime does).
// Each row reports
//   GB/s       = weight bytes the call must read / mean wall time per call
//   best_GB/s  = the same for the fastest call (the probe is a best pass as well; on a shared
//                host the fastest call is the least disturbed one)
//   pct_probe  = best_GB/s / probe GB/s * 100   (the roofline fraction)
// sparse FFN rows add speedup_vs_dense (fastest calls, same ISA, shape, layout, tokens) and
// roofline_speedup = bytes(dense) / bytes(sparse), what equal GB/s would give.
//
// Usage: cpu_kernels_bench [--threads=N] [google-benchmark flags]   (default 2 threads)
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
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
#include "cpu/quants.h"
#include "cpu/kernel_table.h"
#include "cpu/mem_bandwidth.h"
#include "cpu/thread_pool.h"

namespace {

using namespace tandem;
using namespace tandem::cpu;
using Clock = std::chrono::steady_clock;

int g_threads = 2;
double g_probe_gbs = 0.0;
std::unique_ptr<ThreadPool> g_pool;
std::map<std::string, double> g_dense;  // "isa/shape/layout/n_tok" -> seconds per call, bytes per call
std::map<std::string, double> g_dense_bytes;

constexpr size_t k_rotate_bytes = size_t{256} << 20;  // 8x the 32 MiB L3
constexpr int64_t k_rows_per_chunk = 64;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 2 MiB-aligned, touched buffer (no first-touch page faults inside timing).
struct Arena {
  std::unique_ptr<uint8_t[]> raw;
  uint8_t* data = nullptr;
  size_t size = 0;
  // huge: advised MADV_HUGEPAGE before the first touch, as runtime/convert.h's repack buffers
  // are (the file mapping `tandem run` reads otherwise has 4 KiB pages).
  explicit Arena(size_t n, bool huge = false) : raw(new uint8_t[n + (size_t{2} << 20)]), size(n) {
    constexpr uintptr_t k_huge = uintptr_t{2} << 20;
    data = raw.get() + (k_huge - reinterpret_cast<uintptr_t>(raw.get()) % k_huge) % k_huge;
    if (huge) (void)::madvise(data, n, MADV_HUGEPAGE);
    std::memset(data, 0, n);
  }
};

// n_rows rows of k weights of dtype d: random values; q4_0/q8_0 scales in [0.01, 0.02].
// q4_0 only: `sign` > 0 / < 0 forces every (q - 8) of row r positive / negative (gate rows
// with a known ReLU outcome for positive activations).
void fill_rows(DType d, uint8_t* p, int64_t n_rows, int64_t k, uint64_t& seed, const std::vector<int8_t>* sign) {
  const size_t rb = dtype_row_size(d, k);
  for (int64_t r = 0; r < n_rows; ++r) {
    uint8_t* row = p + static_cast<size_t>(r) * rb;
    if (d == DType::q4_0 || d == DType::q8_0) {
      const size_t bs = d == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
      for (int64_t b = 0; b < k / 32; ++b) {
        uint8_t* blk = row + b * bs;
        const uint16_t h = fp32_to_fp16(0.01f + 0.01f * static_cast<float>(splitmix(seed) % 100) / 100.0f);
        std::memcpy(blk, &h, 2);
        for (size_t j = 2; j < bs; j += 8) {
          const uint64_t bits = splitmix(seed);
          std::memcpy(blk + j, &bits, std::min<size_t>(8, bs - j));
        }
        for (size_t j = 2; j < bs; ++j) {
          unsigned v = blk[j];
          if (d == DType::q8_0 && v == 0x80) v = 0x81;
          if (d == DType::q4_0 && sign && (*sign)[static_cast<size_t>(r)] != 0) {
            const unsigned lo = v & 7, hi = (v >> 4) & 7;
            v = (*sign)[static_cast<size_t>(r)] > 0 ? ((9 + lo % 7) | ((9 + hi % 7) << 4)) : (lo | (hi << 4));
          }
          blk[j] = static_cast<uint8_t>(v);
        }
      }
    } else {
      for (int64_t i = 0; i < k; ++i) {
        const float v = static_cast<float>(splitmix(seed) % 2000) / 1000.0f - 1.0f;
        if (d == DType::f32) {
          std::memcpy(row + 4 * i, &v, 4);
        } else {
          const uint16_t h = d == DType::f16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
          std::memcpy(row + 2 * i, &h, 2);
        }
      }
    }
  }
}

// The burst probe: the same read loop as measure_read_bandwidth (read_sum_for(best_isa()),
// widest loads) on the bench's own thread pool, over 4 MiB windows (2 MiB per thread, larger
// than any kernel call here) rotating through 256 MiB so each window is cold; best of `n`
// windows. It is timed exactly like the kernel calls below, so best_GB/s / probe compares
// like with like even on a shared host, where whole-buffer passes are rarely undisturbed.
double burst_probe_gbs(int n) {
  constexpr size_t k_window = size_t{4} << 20;
  static Arena a(k_rotate_bytes);
  const ReadSumFn sum = read_sum_for(best_isa());
  const int64_t n_windows = static_cast<int64_t>(k_rotate_bytes / k_window);
  const int64_t parts = g_threads;
  const size_t words = k_window / 8 / static_cast<size_t>(parts);
  std::vector<uint64_t> sink(static_cast<size_t>(parts));
  double best = 1e30;
  for (int i = 0; i < n; ++i) {
    const auto* base = reinterpret_cast<const uint64_t*>(a.data + static_cast<size_t>(i % n_windows) * k_window);
    const auto t0 = Clock::now();
    g_pool->parallel_for(parts, [&](int64_t p) { sink[static_cast<size_t>(p)] = sum(base + p * words, words); });
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    benchmark::DoNotOptimize(sink.data());
  }
  return static_cast<double>(k_window) / best / 1e9;
}

// GB/s from the mean call; best_GB/s from the fastest call (the probe is a best pass too, and
// on a shared host the fastest call is the one least disturbed); pct_probe = best / probe.
void report(benchmark::State& state, double bytes, double seconds, double bytes_per_call, double best_seconds) {
  state.counters["GB/s"] = bytes / seconds / 1e9;
  state.counters["best_GB/s"] = bytes_per_call / best_seconds / 1e9;
  state.counters["pct_probe"] = 100.0 * bytes_per_call / best_seconds / 1e9 / g_probe_gbs;
}

// Rewrites n_rows contiguous rows of k q4_0 weights in place with a cpu/quants.h repack
// (repack_row_q4_0x16 or repack_row_q4_0_split: the same bytes per row).
void repack_in_place(uint8_t* p, int64_t n_rows, int64_t k, void (*repack)(const void*, void*, int64_t)) {
  const size_t rb = dtype_row_size(DType::q4_0, k);
  std::vector<uint8_t> row(rb);
  for (int64_t r = 0; r < n_rows; ++r) {
    std::memcpy(row.data(), p + static_cast<size_t>(r) * rb, rb);
    repack(row.data(), p + static_cast<size_t>(r) * rb, k);
  }
}

// ---- gemv / gemm ----

struct MatSet {
  size_t mat = 0;
  int64_t n_mats = 0;
  std::unique_ptr<Arena> arena;
};

// x16: q4_0 rows repacked as q4_0x16 (cpu/quants.h), the same bytes per row.
MatSet& mat_set(DType d, int64_t rows, int64_t k, bool x16 = false) {
  static std::map<std::tuple<int, int64_t, int64_t, bool>, MatSet> sets;
  MatSet& s = sets[{static_cast<int>(d), rows, k, x16}];
  if (!s.arena) {
    const size_t rb = dtype_row_size(d, k);
    s.mat = rb * static_cast<size_t>(rows);
    s.n_mats = std::max<int64_t>(2, static_cast<int64_t>((k_rotate_bytes + s.mat - 1) / s.mat));
    s.arena = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_mats));
    uint64_t seed = 1;
    fill_rows(d, s.arena->data, rows * s.n_mats, k, seed, nullptr);
    if (x16) repack_in_place(s.arena->data, rows * s.n_mats, k, repack_row_q4_0x16);
  }
  return s;
}

// The table entries for weight dtype d: (gemv, gemm).
std::pair<GemvFn KernelTable::*, GemmFn KernelTable::*> mul_mat_entries(DType d) {
  if (d == DType::q4_0) return {&KernelTable::gemv_q4_0_q8_0, &KernelTable::gemm_q4_0_q8_0};
  if (d == DType::q8_0) return {&KernelTable::gemv_q8_0_q8_0, &KernelTable::gemm_q8_0_q8_0};
  if (d == DType::f16) return {&KernelTable::gemv_f16_f32, &KernelTable::gemm_f16_f32};
  if (d == DType::bf16) return {&KernelTable::gemv_bf16_f32, &KernelTable::gemm_bf16_f32};
  return {&KernelTable::gemv_f32, &KernelTable::gemm_f32};
}

void BM_mul_mat(benchmark::State& state, const KernelTable* kt, DType d, int64_t rows, int64_t k, int64_t n_tok,
                bool x16 = false) {
  MatSet& s = mat_set(d, rows, k, x16);
  const bool q = d == DType::q4_0 || d == DType::q8_0;
  std::vector<float> x(static_cast<size_t>(k * n_tok));
  uint64_t seed = 2;
  for (auto& v : x) v = static_cast<float>(splitmix(seed) % 2000) / 1000.0f - 1.0f;
  const size_t xrb = q ? dtype_row_size(DType::q8_0, k) : static_cast<size_t>(k) * 4;
  std::vector<uint8_t> xq(xrb * static_cast<size_t>(n_tok));
  std::vector<float> y(static_cast<size_t>(rows * n_tok));
  const size_t rb = dtype_row_size(d, k);
  const int64_t n_chunks = (rows + k_rows_per_chunk - 1) / k_rows_per_chunk;
  const GemvFn gemv = x16 ? kt->gemv_q4_0x16_q8_0 : kt->*mul_mat_entries(d).first;
  const GemmFn gemm = x16 ? kt->gemm_q4_0x16_q8_0 : kt->*mul_mat_entries(d).second;
  int64_t m = 0;
  double total = 0, best = 1e30;
  for (auto _ : state) {
    const uint8_t* w = s.arena->data + static_cast<size_t>(m) * s.mat;
    m = (m + 1) % s.n_mats;
    const auto t0 = Clock::now();
    for (int64_t t = 0; t < n_tok; ++t) {
      if (q) {
        kt->quantize_row_q8_0(x.data() + t * k, xq.data() + t * xrb, k);
      } else {
        std::memcpy(xq.data() + t * xrb, x.data() + t * k, xrb);
      }
    }
    g_pool->parallel_for(n_chunks, [&](int64_t c) {
      const int64_t r0 = c * k_rows_per_chunk, r1 = std::min(rows, r0 + k_rows_per_chunk);
      if (n_tok == 1) {
        gemv(k, r1 - r0, w + r0 * rb, rb, xq.data(), y.data() + r0);
      } else {
        gemm(k, r1 - r0, w + r0 * rb, rb, xq.data(), xrb, n_tok, y.data() + r0, rows);
      }
    });
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    total += dt;
    best = std::min(best, dt);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, static_cast<double>(s.mat) * static_cast<double>(state.iterations()), total, static_cast<double>(s.mat),
         best);
}

// One thread, a 1536x256 q4_0 matrix that stays in L2: the kernel's compute ceiling per core,
// to tell memory-bound DRAM rows from compute-bound ones.
void BM_gemv_q4_0_hot(benchmark::State& state, const KernelTable* kt, bool x16) {
  const int64_t rows = 256, k = 1536;
  const size_t rb = dtype_row_size(DType::q4_0, k);
  Arena a(rb * rows);
  uint64_t seed = 5;
  fill_rows(DType::q4_0, a.data, rows, k, seed, nullptr);
  if (x16) repack_in_place(a.data, rows, k, repack_row_q4_0x16);
  const GemvFn gemv = x16 ? kt->gemv_q4_0x16_q8_0 : kt->gemv_q4_0_q8_0;
  std::vector<float> x(static_cast<size_t>(k), 0.5f), y(static_cast<size_t>(rows));
  std::vector<uint8_t> xq(dtype_row_size(DType::q8_0, k));
  kt->quantize_row_q8_0(x.data(), xq.data(), k);
  for (auto _ : state) {
    gemv(k, rows, a.data, rb, xq.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  // Rate per CPU second of the (only) thread: compute-bound, so time descheduled is not counted.
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(rb * rows) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// ---- expert FFN ----

constexpr double k_inactive[3] = {0.0, 0.6, 0.8};

struct FfnSet {
  int64_t n_embd = 0, n_ff = 0, n_expert = 0;
  size_t mat = 0;
  std::unique_ptr<Arena> gate[3], up, down;  // gate per inactivity level 0 / 60 / 80 %
  std::unique_ptr<Arena> updown;               // up and down rows of each neuron side by side (the CPU repack)
  // The CPU repack as `tandem run` makes it on a table that prefers q4_0x16: gate rows as
  // q4_0x16, and updown with its up rows as q4_0x16 and its down rows as q4_0_split.
  std::unique_ptr<Arena> gate_x16[3], updown_x16;
};

FfnSet& ffn_set(int64_t n_embd, int64_t n_ff) {
  static std::map<std::pair<int64_t, int64_t>, FfnSet> sets;
  FfnSet& s = sets[{n_embd, n_ff}];
  if (s.up) return s;
  s.n_embd = n_embd;
  s.n_ff = n_ff;
  s.mat = dtype_row_size(DType::q4_0, n_embd) * static_cast<size_t>(n_ff);
  s.n_expert = static_cast<int64_t>(k_rotate_bytes / 3 / s.mat);  // gate + up + down >= 256 MiB streamed
  uint64_t seed = 3;
  for (int l = 0; l < 3; ++l) {
    std::vector<int8_t> sign(static_cast<size_t>(n_ff * s.n_expert), 1);
    for (int64_t e = 0; e < s.n_expert; ++e) {
      std::vector<int64_t> perm(static_cast<size_t>(n_ff));
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t i = n_ff - 1; i > 0; --i) std::swap(perm[i], perm[splitmix(seed) % static_cast<uint64_t>(i + 1)]);
      const auto n_off = static_cast<int64_t>(k_inactive[l] * static_cast<double>(n_ff) + 0.5);
      for (int64_t i = 0; i < n_off; ++i) sign[static_cast<size_t>(e * n_ff + perm[i])] = -1;
    }
    s.gate[l] = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
    fill_rows(DType::q4_0, s.gate[l]->data, n_ff * s.n_expert, n_embd, seed, &sign);
  }
  s.up = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
  s.down = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert));
  fill_rows(DType::q4_0, s.up->data, n_ff * s.n_expert, n_embd, seed, nullptr);
  fill_rows(DType::q4_0, s.down->data, n_ff * s.n_expert, n_embd, seed, nullptr);
  // As runtime/convert.h repack_for_cpu lays them out without q4_0x16 (same bytes per row).
  s.updown = std::make_unique<Arena>(2 * s.mat * static_cast<size_t>(s.n_expert), true);
  const size_t rb = dtype_row_size(DType::q4_0, n_embd);
  for (int64_t r = 0; r < n_ff * s.n_expert; ++r) {
    std::memcpy(s.updown->data + 2 * static_cast<size_t>(r) * rb, s.up->data + static_cast<size_t>(r) * rb, rb);
    std::memcpy(s.updown->data + (2 * static_cast<size_t>(r) + 1) * rb, s.down->data + static_cast<size_t>(r) * rb, rb);
  }
  if (n_embd % k_q4_0x16_elems == 0) {
    const size_t rows = static_cast<size_t>(n_ff * s.n_expert);
    for (int l = 0; l < 3; ++l) {
      s.gate_x16[l] = std::make_unique<Arena>(s.mat * static_cast<size_t>(s.n_expert), true);
      for (size_t r = 0; r < rows; ++r) repack_row_q4_0x16(s.gate[l]->data + r * rb, s.gate_x16[l]->data + r * rb, n_embd);
    }
    s.updown_x16 = std::make_unique<Arena>(2 * s.mat * static_cast<size_t>(s.n_expert), true);
    for (size_t r = 0; r < rows; ++r) {
      repack_row_q4_0x16(s.up->data + r * rb, s.updown_x16->data + 2 * r * rb, n_embd);
      repack_row_q4_0_split(s.down->data + r * rb, s.updown_x16->data + (2 * r + 1) * rb, n_embd);
    }
  }
  return s;
}

// repacked (transposed down only): up and down rows from FfnSet::updown, row stride 2 rows.
void BM_expert_ffn(benchmark::State& state, const KernelTable* kt, int64_t n_embd, int64_t n_ff, DownLayout layout,
                   FfnMode mode, int level, int64_t n_tok, bool repacked) {
  FfnSet& s = ffn_set(n_embd, n_ff);
  const int64_t d = n_embd, f = n_ff;
  const auto n = static_cast<size_t>(n_tok * d);
  std::vector<float> x(n), acc(n, 0.0f), rw(static_cast<size_t>(n_tok), 0.5f);
  uint64_t seed = 4;
  for (auto& v : x) v = 0.1f + static_cast<float>(splitmix(seed) % 900) / 1000.0f;  // positive: gate rows set ReLU
  ExpertFfnWorkspace ws;
  ExpertFfnStats st;
  int64_t e = 0;
  double total = 0, bytes = 0, active = 0, best = 1e30;
  for (auto _ : state) {
    ExpertFfnWeights w;
    const size_t off = static_cast<size_t>(e) * s.mat;
    e = (e + 1) % s.n_expert;
    w.gate = TensorView::contiguous(s.gate[level]->data + off, DType::q4_0, {d, f, 1, 1});
    w.up = TensorView::contiguous(s.up->data + off, DType::q4_0, {d, f, 1, 1});
    w.down = layout == DownLayout::transposed ? TensorView::contiguous(s.down->data + off, DType::q4_0, {d, f, 1, 1})
                                              : TensorView::contiguous(s.down->data + off, DType::q4_0, {f, d, 1, 1});
    w.down_layout = layout;
    if (repacked) {
      const size_t rb = w.up.row_size();
      const bool x16 = kt->prefer_q4_0x16 && s.updown_x16;
      const uint8_t* ud = (x16 ? s.updown_x16 : s.updown)->data;
      if (x16) {
        w.gate.data = s.gate_x16[level]->data + off;
        w.gate.layout = w.up.layout = RowLayout::q4_0x16;
        w.down.layout = RowLayout::q4_0_split;
      }
      w.up.data = ud + 2 * off;
      w.down.data = ud + 2 * off + rb;
      w.up.nb[1] = w.down.nb[1] = 2 * rb;
      w.up.nb[2] = w.down.nb[2] = 2 * rb * static_cast<size_t>(f);
      w.up.nb[3] = w.down.nb[3] = w.up.nb[2];
    }
    const auto t0 = Clock::now();
    const Status status =
        expert_ffn(*kt, w, mode, ExpertFfnBatch{x.data(), d, n_tok, rw.data(), acc.data(), d}, ws, *g_pool, &st);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    total += dt;
    best = std::min(best, dt);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    bytes += static_cast<double>(st.bytes_read);
    active += static_cast<double>(st.n_active);
  }
  const double calls = static_cast<double>(state.iterations());
  report(state, bytes, total, bytes / calls, best);  // bytes per call are the same every call
  state.counters["inactive_pct"] = 100.0 * (1.0 - active / calls / static_cast<double>(f));
  state.counters["best_us"] = 1e6 * best;
  const std::string key = std::string(isa_name(kt->isa)) + "/" + std::to_string(n_embd) +
                          (layout == DownLayout::transposed ? "/t/" : "/s/") + std::to_string(n_tok);  // dense: not repacked
  if (mode == FfnMode::dense) {
    g_dense[key] = best;
    g_dense_bytes[key] = bytes / calls;
  } else if (g_dense.count(key)) {
    state.counters["speedup_vs_dense"] = g_dense[key] / best;
    state.counters["roofline_speedup"] = g_dense_bytes[key] / (bytes / calls);
  }
}

// The sparse expert's reads alone: one 4b expert per call as `tandem run` lays it out on a
// table that prefers q4_0x16 (FfnSet::gate_x16, updown_x16), rotating through the experts like
// BM_expert_ffn, in its 12 neuron chunks on the pool: each chunk reads its gate rows, then
// prefetches and reads the up and down rows of the neurons expert_ffn finds active for the
// same input (found once, outside the timing). The same bytes in the same order without the
// arithmetic: how near the probe the memory system serves this pattern, beside how near the
// whole call gets.
// contiguous: each chunk task reads the same number of bytes as its active rows hold, but as
// one stream from the start of the chunk's up/down region (no software prefetch): what the
// same call costs without the scattered pattern (fork-join, gate and call size unchanged).
void BM_expert_reads_only(benchmark::State& state, const KernelTable* kt, int level, bool contiguous) {
  FfnSet& s = ffn_set(1536, 768);
  const int64_t d = s.n_embd, f = s.n_ff, n_chunk = f / k_ffn_chunk;
  static std::map<int, std::vector<std::vector<uint8_t>>> active_by_level;
  auto& act = active_by_level[level];
  if (act.empty()) {
    std::vector<float> x(static_cast<size_t>(d)), acc(x.size(), 0.0f);
    float rw = 0.5f;  // one token's routing weight
    uint64_t seed = 4;
    for (auto& v : x) v = 0.1f + static_cast<float>(splitmix(seed) % 900) / 1000.0f;  // as BM_expert_ffn
    ExpertFfnWorkspace ws;
    SerialRunner serial;
    for (int64_t e = 0; e < s.n_expert; ++e) {
      ExpertFfnWeights w;
      const size_t off = static_cast<size_t>(e) * s.mat;
      w.gate = TensorView::contiguous(s.gate[level]->data + off, DType::q4_0, {d, f, 1, 1});
      w.up = TensorView::contiguous(s.up->data + off, DType::q4_0, {d, f, 1, 1});
      w.down = TensorView::contiguous(s.down->data + off, DType::q4_0, {d, f, 1, 1});
      w.down_layout = DownLayout::transposed;
      const Status st =
          expert_ffn(*kt, w, FfnMode::sparse, ExpertFfnBatch{x.data(), d, 1, &rw, acc.data(), d}, ws, serial);
      if (!st.ok()) {
        state.SkipWithError(st.message().c_str());
        return;
      }
      act.push_back(ws.active);
    }
  }
  const ReadSumFn sum = read_sum_for(best_isa());
  const size_t rb = dtype_row_size(DType::q4_0, d), chunk_gate = static_cast<size_t>(k_ffn_chunk) * rb;
  std::vector<uint64_t> sink(static_cast<size_t>(n_chunk));
  int64_t e = 0;
  double best = 1e30, bytes = 0;
  for (auto _ : state) {
    const size_t off = static_cast<size_t>(e) * s.mat;
    const uint8_t* gate = s.gate_x16[level]->data + off;
    const uint8_t* ud = s.updown_x16->data + 2 * off;
    const std::vector<uint8_t>& on = act[static_cast<size_t>(e)];
    e = (e + 1) % s.n_expert;
    const auto t0 = Clock::now();
    g_pool->parallel_for(n_chunk, [&](int64_t c) {
      uint64_t v = sum(reinterpret_cast<const uint64_t*>(gate + static_cast<size_t>(c) * chunk_gate), chunk_gate / 8);
      const int64_t j0 = c * k_ffn_chunk;
      if (contiguous) {
        const auto n_on = std::count(on.begin() + j0, on.begin() + j0 + k_ffn_chunk, uint8_t{1});
        v += sum(reinterpret_cast<const uint64_t*>(ud + 2 * rb * static_cast<size_t>(j0)),
                 2 * rb * static_cast<size_t>(n_on) / 8);
        sink[static_cast<size_t>(c)] = v;
        return;
      }
      for (int64_t j = j0; j < j0 + k_ffn_chunk; ++j)  // as expert_ffn asks for its active rows
        if (on[static_cast<size_t>(j)]) {
          for (size_t o = 0; o < 2 * rb; o += 64) __builtin_prefetch(ud + 2 * rb * static_cast<size_t>(j) + o, 0, 2);
        }
      for (int64_t j = j0; j < j0 + k_ffn_chunk; ++j)
        if (on[static_cast<size_t>(j)]) v += sum(reinterpret_cast<const uint64_t*>(ud + 2 * rb * static_cast<size_t>(j)), 2 * rb / 8);
      sink[static_cast<size_t>(c)] = v;
    });
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    benchmark::DoNotOptimize(sink.data());
    const auto n_on = static_cast<double>(std::count(on.begin(), on.end(), uint8_t{1}));
    bytes = static_cast<double>(s.mat) + n_on * 2.0 * static_cast<double>(rb);  // gate + active (up + down) rows
  }
  state.counters["best_GB/s"] = bytes / best / 1e9;
  state.counters["pct_probe"] = 100.0 * bytes / best / 1e9 / g_probe_gbs;
  state.counters["best_us"] = 1e6 * best;
}

// One 4b expert (3 x 648 KiB, in L2/L3) called again and again, transposed down: the FFN's
// ceiling without DRAM. One thread (dense): the compute rate per core. The pool's threads
// (level 1: 60% inactive): compute plus the fork-join and serial parts of one call.
// repacked: as `tandem run` lays the expert out on this table (FfnSet::updown / updown_x16).
void BM_expert_ffn_hot(benchmark::State& state, const KernelTable* kt, bool pool, int level, bool repacked) {
  FfnSet& s = ffn_set(1536, 768);
  const int64_t d = s.n_embd, f = s.n_ff;
  std::vector<float> x(static_cast<size_t>(d)), acc(x.size(), 0.0f);
  float rw = 0.5f;  // one token's routing weight
  uint64_t seed = 4;
  for (auto& v : x) v = 0.1f + static_cast<float>(splitmix(seed) % 900) / 1000.0f;  // as BM_expert_ffn
  ExpertFfnWeights w;
  w.gate = TensorView::contiguous(s.gate[level]->data, DType::q4_0, {d, f, 1, 1});
  w.up = TensorView::contiguous(s.up->data, DType::q4_0, {d, f, 1, 1});
  w.down = TensorView::contiguous(s.down->data, DType::q4_0, {d, f, 1, 1});
  w.down_layout = DownLayout::transposed;
  if (repacked) {
    const size_t rb = w.up.row_size();
    const bool x16 = kt->prefer_q4_0x16 && s.updown_x16;
    const uint8_t* ud = (x16 ? s.updown_x16 : s.updown)->data;
    if (x16) {
      w.gate.data = s.gate_x16[level]->data;
      w.gate.layout = w.up.layout = RowLayout::q4_0x16;
      w.down.layout = RowLayout::q4_0_split;
    }
    w.up.data = ud;
    w.down.data = ud + rb;
    w.up.nb[1] = w.down.nb[1] = 2 * rb;
    w.up.nb[2] = w.down.nb[2] = w.up.nb[3] = w.down.nb[3] = 2 * rb * static_cast<size_t>(f);
  }
  ExpertFfnWorkspace ws;
  ExpertFfnStats st;
  SerialRunner serial;
  const ChunkRunner& runner = pool ? static_cast<const ChunkRunner&>(*g_pool) : serial;
  const FfnMode mode = level == 0 ? FfnMode::dense : FfnMode::sparse;
  for (auto _ : state) {
    const Status status =
        expert_ffn(*kt, w, mode, ExpertFfnBatch{x.data(), d, 1, &rw, acc.data(), d}, ws, runner, &st);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(st.bytes_read) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// One thread, a 4b expert's up chunk (64 rows x 1536, q4_0, in L2) for a batch of 16 tokens:
// every (row, token) pair (gemm_rows, pct = 100) against only pct% of them chosen at random per
// row (gemm_pairs: the sparse FFN's up where the gate is on). GMAC/s over the pairs computed:
// equal rates mean skipping a pair saves its full cost.
void BM_up_pairs(benchmark::State& state, const KernelTable* kt, int pct) {
  const int64_t rows = 64, k = 1536, n_tok = 16;
  const size_t rb = dtype_row_size(DType::q4_0, k), xrb = dtype_row_size(DType::q8_0, k);
  Arena a(rb * rows);
  uint64_t seed = 6;
  fill_rows(DType::q4_0, a.data, rows, k, seed, nullptr);
  std::vector<float> x(static_cast<size_t>(k * n_tok));
  for (auto& v : x) v = static_cast<float>(splitmix(seed) % 2000) / 1000.0f - 1.0f;
  std::vector<uint8_t> xq(xrb * n_tok);
  for (int64_t t = 0; t < n_tok; ++t) kt->quantize_row_q8_0(x.data() + t * k, xq.data() + t * xrb, k);
  std::vector<int32_t> idx(rows), off{0}, tok;
  std::iota(idx.begin(), idx.end(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int32_t t = 0; t < n_tok; ++t)
      if (static_cast<int>(splitmix(seed) % 100) < pct) tok.push_back(t);
    off.push_back(static_cast<int32_t>(tok.size()));
  }
  std::vector<float> y(static_cast<size_t>(rows * n_tok));
  for (auto _ : state) {
    if (pct >= 100) {
      kt->gemm_rows_q4_0_q8_0(k, rows, idx.data(), a.data, rb, xq.data(), xrb, n_tok, y.data(), rows);
    } else {
      kt->gemm_pairs_q4_0_q8_0(k, rows, idx.data(), off.data(), tok.data(), a.data, rb, xq.data(), xrb, n_tok,
                               y.data(), rows);
    }
    benchmark::DoNotOptimize(y.data());
  }
  const double pairs = pct >= 100 ? static_cast<double>(rows * n_tok) : static_cast<double>(tok.size());
  state.counters["pairs"] = pairs;
  state.counters["GMAC/s"] =
      benchmark::Counter(pairs * static_cast<double>(k) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// One thread, the transposed down of one 4b neuron chunk for one token: 26 of its 64 rows
// (60% inactive) x 1536 columns, q4_0, in L1/L2 (down_rows: 8-bit coefficients, integer dots).
// GB/s of the rows read, beside the q4_0 GEMV's rate on hot rows (the same bytes per weight).
// split: the rows repacked as q4_0_split (down_rows_q4_0_split).
void BM_down_rows_hot(benchmark::State& state, const KernelTable* kt, bool split) {
  const int64_t rows = 64, k = 1536;
  const size_t rb = dtype_row_size(DType::q4_0, k);
  Arena w(rb * rows);
  uint64_t seed = 7;
  fill_rows(DType::q4_0, w.data, rows, k, seed, nullptr);
  if (split) repack_in_place(w.data, rows, k, repack_row_q4_0_split);
  const DownRowsFn down_rows = split ? kt->down_rows_q4_0_split : kt->down_rows_q4_0;
  std::vector<int32_t> idx;
  for (int32_t r = 0; r < rows && idx.size() < 26; ++r)
    if (splitmix(seed) % 64 < 28 || rows - r <= 26 - static_cast<int32_t>(idx.size())) idx.push_back(r);
  std::vector<float> a(static_cast<size_t>(rows)), y(static_cast<size_t>(k));
  for (auto& v : a) v = static_cast<float>(splitmix(seed) % 2000) / 1000.0f - 1.0f;
  for (auto _ : state) {
    down_rows(k, static_cast<int64_t>(idx.size()), idx.data(), w.data, rb, a.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["rows"] = static_cast<double>(idx.size());
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(rb * idx.size()) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
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

void register_all() {
  struct Shape {
    const char* name;
    int64_t n_embd, n_ff, n_vocab;
  };
  const Shape shapes[] = {{"4b", 1536, 768, 151936}, {"21b", 2560, 768, 151936}};
  for (Isa isa : k_all_isas) {
    const KernelTable* kt = kernels_for(isa);
    if (!kt) continue;
    const std::string sfx = "__" + std::string(isa_name(isa));
    const auto reg = [](const std::string& name, auto&&... args) {
      benchmark::RegisterBenchmark(name.c_str(), args...)->Unit(benchmark::kMicrosecond)->UseRealTime();
    };
    for (const Shape& sh : shapes) {
      const std::string e = std::to_string(sh.n_embd);
      reg("mul_mat_vec_q4_0_q8_0" + sfx + "/" + sh.name + "_attn_q_" + e + "x" + e, BM_mul_mat, kt, DType::q4_0,
          sh.n_embd, sh.n_embd, int64_t{1}, false);
      reg("mul_mat_vec_q4_0_q8_0" + sfx + "/" + sh.name + "_output_" + e + "x" + std::to_string(sh.n_vocab),
          BM_mul_mat, kt, DType::q4_0, sh.n_vocab, sh.n_embd, int64_t{1}, false);
      if (kt->prefer_q4_0x16) {  // the same rows repacked (`tandem run`'s default on this table)
        reg("mul_mat_vec_q4_0x16_q8_0" + sfx + "/" + sh.name + "_attn_q_" + e + "x" + e, BM_mul_mat, kt, DType::q4_0,
            sh.n_embd, sh.n_embd, int64_t{1}, true);
        reg("mul_mat_vec_q4_0x16_q8_0" + sfx + "/" + sh.name + "_output_" + e + "x" + std::to_string(sh.n_vocab),
            BM_mul_mat, kt, DType::q4_0, sh.n_vocab, sh.n_embd, int64_t{1}, true);
      }
    }
    if (isa == Isa::scalar) continue;  // the reference: far from memory-bound; shown for scale
    reg("mul_mat_q4_0_q8_0" + sfx + "/4b_attn_q_1536x1536/n_tok_8", BM_mul_mat, kt, DType::q4_0, int64_t{1536},
        int64_t{1536}, int64_t{8}, false);
    if (kt->prefer_q4_0x16) {
      reg("mul_mat_q4_0x16_q8_0" + sfx + "/4b_attn_q_1536x1536/n_tok_8", BM_mul_mat, kt, DType::q4_0, int64_t{1536},
          int64_t{1536}, int64_t{8}, true);
    }
    for (DType d : {DType::q8_0, DType::f16, DType::bf16, DType::f32}) {
      reg("mul_mat_vec_" + std::string(dtype_name(d)) + (d == DType::q8_0 ? "_q8_0" : "_f32") + sfx +
              "/4b_attn_q_1536x1536",
          BM_mul_mat, kt, d, int64_t{1536}, int64_t{1536}, int64_t{1}, false);
    }
    benchmark::RegisterBenchmark(("mul_mat_vec_q4_0_q8_0" + sfx + "/hot_l2_1536x256_1thread").c_str(),
                                 BM_gemv_q4_0_hot, kt, false)
        ->Unit(benchmark::kMicrosecond);
    if (kt->prefer_q4_0x16) {
      benchmark::RegisterBenchmark(("mul_mat_vec_q4_0x16_q8_0" + sfx + "/hot_l2_1536x256_1thread").c_str(),
                                   BM_gemv_q4_0_hot, kt, true)
          ->Unit(benchmark::kMicrosecond);
    }
    benchmark::RegisterBenchmark(("down_rows_q4_0" + sfx + "/hot_l2_26of64x1536_1thread").c_str(), BM_down_rows_hot,
                                 kt, false)
        ->Unit(benchmark::kMicrosecond);
    if (kt->prefer_q4_0x16) {
      benchmark::RegisterBenchmark(("down_rows_q4_0_split" + sfx + "/hot_l2_26of64x1536_1thread").c_str(),
                                   BM_down_rows_hot, kt, true)
          ->Unit(benchmark::kMicrosecond);
    }
    for (int pct : {100, 40}) {
      benchmark::RegisterBenchmark(("up_batch_q4_0_q8_0" + sfx + "/hot_l2_64x1536_16tok_1thread/" +
                                    (pct >= 100 ? std::string("gemm_rows_all_pairs") :
                                                  "gemm_pairs_" + std::to_string(pct) + "pct"))
                                       .c_str(),
                                   BM_up_pairs, kt, pct)
          ->Unit(benchmark::kMicrosecond);
    }
    benchmark::RegisterBenchmark(("expert_ffn_dense_q4_0" + sfx + "/hot_l3_4b_down_transposed_1thread").c_str(),
                                 BM_expert_ffn_hot, kt, false, 0, false)
        ->Unit(benchmark::kMicrosecond);
    for (bool rp : {false, true}) {
      benchmark::RegisterBenchmark(("expert_ffn_sparse_q4_0" + sfx + "/hot_l3_4b_down_transposed" +
                                    (rp ? "_repacked" : "") + "/inactive_60/pool")
                                       .c_str(),
                                   BM_expert_ffn_hot, kt, true, 1, rp)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
    if (kt->prefer_q4_0x16) {
      for (int level : {1, 2}) {
        for (bool contiguous : {false, true}) {
          benchmark::RegisterBenchmark(("expert_reads_only" + sfx + "/4b_down_transposed_repacked/inactive_" +
                                        std::to_string(static_cast<int>(k_inactive[level] * 100)) + "/n_tok_1" +
                                        (contiguous ? "/contiguous" : ""))
                                           .c_str(),
                                       BM_expert_reads_only, kt, level, contiguous)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
      }
    }
    for (const Shape& sh : shapes) {
      for (DownLayout layout : {DownLayout::transposed, DownLayout::standard}) {
        if (sh.n_embd != 1536 && layout == DownLayout::standard) continue;
        const std::string ln = layout == DownLayout::transposed ? "down_transposed" : "down_standard";
        for (int64_t n_tok : {int64_t{1}, int64_t{8}}) {
          const std::string tail = "/n_tok_" + std::to_string(n_tok);
          const std::string base = std::string("_q4_0") + sfx + "/" + sh.name + "_" + ln;
          reg("expert_ffn_dense" + base + tail, BM_expert_ffn, kt, sh.n_embd, sh.n_ff, layout, FfnMode::dense, 0,
              n_tok, false);
          for (int level : {1, 2}) {
            const std::string lv = "/inactive_" + std::to_string(static_cast<int>(k_inactive[level] * 100));
            reg("expert_ffn_sparse" + base + lv + tail, BM_expert_ffn, kt, sh.n_embd, sh.n_ff, layout, FfnMode::sparse,
                level, n_tok, false);
            // Beside it, the same expert repacked as `tandem run` does by default: up and down rows
            // side by side, and where the table prefers it gate and up rows as q4_0x16 and down
            // rows as q4_0_split.
            if (layout == DownLayout::transposed) {
              reg("expert_ffn_sparse" + base + "_repacked" + lv + tail, BM_expert_ffn, kt, sh.n_embd, sh.n_ff, layout,
                  FfnMode::sparse, level, n_tok, true);
            }
          }
        }
      }
    }
  }
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

  // The probes run first so every row can be reported against them.
  const Result<BandwidthResult> probe = measure_read_bandwidth(g_threads, uint64_t{512} << 20, 7);
  if (!probe.ok()) {
    std::fprintf(stderr, "read-bandwidth probe failed: %s\n", probe.status().message().c_str());
    return 1;
  }
  g_probe_gbs = burst_probe_gbs(400);
  std::printf("read-bandwidth probe (whole buffer): %.2f GB/s (best of 7 passes over %.0f MiB, %d threads, %s loads)\n",
              probe.value().gbps, static_cast<double>(probe.value().bytes) / (1 << 20), probe.value().n_threads,
              std::string(isa_name(best_isa())).c_str());
  std::printf("read-bandwidth probe (burst, the pct_probe reference): %.2f GB/s (best of 400 cold 4 MiB windows, %d "
              "threads)\n",
              g_probe_gbs, g_threads);
  benchmark::AddCustomContext("commit", git_commit());
  benchmark::AddCustomContext("cpu", cpu_model_name());
  benchmark::AddCustomContext("cpu_features", cpu_features().summary());
  benchmark::AddCustomContext("best_isa", std::string(isa_name(best_isa())));
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("compiler", __VERSION__);
  benchmark::AddCustomContext("probe_whole_GB/s", std::to_string(probe.value().gbps));
  benchmark::AddCustomContext("probe_burst_GB/s", std::to_string(g_probe_gbs));
  register_all();
  benchmark::Initialize(&n_args, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
