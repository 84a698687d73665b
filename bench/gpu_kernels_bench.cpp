// GPU kernel throughput on the chosen Vulkan device: mul_mat_vec GB/s per weight dtype
// (weight bytes read per second, every shader variant the device runs: portable, subgroup,
// intdot (its time includes the quantize_q8_1 of x), fp16), staging upload bandwidth, and the
// attention / routing / expert kernels at SmallThinker-4B shapes (flash_attn decode and prompt,
// set_rows, get_rows, top_k, mul_mat_id, moe_sum: microseconds per call and the GB/s of the
// bytes each call must read; flash_attn, top_k and mul_mat_id per shader variant), each beside
// a host memcpy bandwidth measured in the same run.
//
//   gpu_kernels_bench [--device auto|cpu|N] [--rows R] [--cols K] [--reps N]
//
// Figures on a CPU device (lavapipe) measure the CPU running SPIR-V and say nothing about
// GPUs; the bench prints that warning. Exits 0 with a message when there is no device.
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <functional>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/instance.h"
#include "gpu/ops/flash_attn.h"
#include "gpu/ops/get_rows.h"
#include "gpu/ops/moe_sum.h"
#include "gpu/ops/mul_mat_id.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/quantize_q8_1.h"
#include "gpu/ops/set_rows.h"
#include "gpu/ops/top_k.h"
#include "gpu/staging_ring.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  gpu::GpuOptions opt = gpu::GpuOptions::from_env();
  int64_t rows = 8192, cols = 4096;
  int reps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--device") opt.device = argv[i + 1];
    else if (a == "--rows") rows = std::stoll(argv[i + 1]);
    else if (a == "--cols") cols = std::stoll(argv[i + 1]) / 32 * 32;
    else if (a == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
  }
  auto inst = gpu::Instance::create(opt);
  if (!inst.ok()) {
    fmt::print("no Vulkan: {}\n", inst.status().message());
    return 0;
  }
  auto dev = gpu::Device::create(**inst);
  if (!dev.ok()) {
    fmt::print("no Vulkan device to benchmark ({}); try --device cpu for lavapipe\n", dev.status().message());
    return 0;
  }
  gpu::Device& d = **dev;
  fmt::print("device: {}\n", d.summary());
  if (d.caps().is_software()) {
    fmt::print("WARNING: '{}' is a CPU (software) Vulkan device: these figures measure the host CPU running "
               "SPIR-V and say nothing about GPU performance.\n", d.caps().name);
  }
  fmt::print("shape: {} rows x {} cols, {} reps (median [min, max])\n", rows, cols, reps);

  // Host reference: memcpy bandwidth over the same size as the largest weight matrix.
  const size_t ref_bytes = static_cast<size_t>(rows * cols) * 4;
  std::vector<uint8_t> a(ref_bytes, 1), b(ref_bytes);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), ref_bytes);
    t.push_back(seconds_since(t0));
  }
  const Stats host = stats(t);
  fmt::print("{:<44} {:>9.2f} GB/s (read+write {:.2f} GB/s)\n", "host memcpy (reference)", ref_bytes / host.median / 1e9,
             2.0 * ref_bytes / host.median / 1e9);

  auto pipelines = gpu::PipelineCache::create(d);
  if (!pipelines.ok()) return fmt::print("error: {}\n", pipelines.status().message()), 1;
  auto rec = gpu::CommandRecorder::create(d, **pipelines);
  if (!rec.ok()) return fmt::print("error: {}\n", rec.status().message()), 1;
  std::mt19937 rng(42);

  for (DType dt : {DType::f32, DType::f16, DType::q8_0, DType::q4_0}) {
    const size_t bytes = dtype_row_size(dt, cols) * static_cast<size_t>(rows);
    auto wb = gpu::Buffer::create(d, bytes, gpu::MemoryIntent::device_weights, "weights");
    auto xb = gpu::Buffer::create(d, static_cast<uint64_t>(cols) * 4, gpu::MemoryIntent::shared, "x");
    auto db = gpu::Buffer::create(d, static_cast<uint64_t>(rows) * 4, gpu::MemoryIntent::readback, "dst");
    auto qb = gpu::Buffer::create(d, std::max<uint64_t>(4, gpu::ops::q8_1_bytes(cols, 1)), gpu::MemoryIntent::shared,
                                  "q8_1");
    if (!wb.ok() || !xb.ok() || !db.ok() || !qb.ok()) {
      fmt::print("{}: cannot allocate {} bytes\n", dtype_name(dt), bytes);
      continue;
    }
    // Weights contents do not change the timing of these kernels; fill host-visible ones with
    // small values so f16/f32 stay finite (device-local ones keep whatever the driver gave).
    if (wb->host_data() != nullptr) {
      std::vector<uint8_t> fill(bytes);
      for (auto& v : fill) v = static_cast<uint8_t>(rng() & 0x3b);
      (void)wb->write(fill.data(), bytes);
    }
    if (xb->host_data() != nullptr) {
      std::vector<float> x(static_cast<size_t>(cols));
      for (auto& v : x) v = static_cast<float>(rng() % 1000) / 1000.0f - 0.5f;
      (void)xb->write(x.data(), x.size() * 4);
    }
    for (auto variant : gpu::ops::mul_mat_vec_variants(d, dt)) {
      auto name = gpu::ops::mul_mat_vec_variant(d, dt, variant);
      if (!name.ok()) continue;
      gpu::ops::MulMatVecOptions mo;
      mo.variant = variant;
      if (variant == gpu::ops::ShaderVariant::intdot) mo.q8_1 = qb->slice();
      t.clear();
      for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (pipeline build)
        if (!(*rec)->begin().ok()) return 1;
        (*rec)->timestamp("begin");
        Status s = gpu::ops::mul_mat_vec(**rec, dt, wb->slice(), cols, rows, xb->slice(), db->slice(), mo);
        if (!s.ok()) return fmt::print("error: {}\n", s.message()), 1;
        (*rec)->timestamp("end");
        const auto t0 = Clock::now();
        if (!(*rec)->submit_and_wait().ok()) return 1;
        const double wall = seconds_since(t0);
        auto ts = (*rec)->timestamps();
        const double sec = ts.ok() && ts->size() == 2 && ts->at(1).ms > 0 ? ts->at(1).ms * 1e-3 : wall;
        if (r >= 0) t.push_back(sec);
      }
      const Stats st = stats(t);
      fmt::print("{:<44} {:>9.2f} GB/s [{:.2f}, {:.2f}]  {:.3f} ms  ({:.1f} MiB weights)\n", *name,
                 bytes / st.median / 1e9, bytes / st.max / 1e9, bytes / st.min / 1e9, st.median * 1e3,
                 bytes / 1048576.0);
    }
  }

  // Attention, routing and expert kernels at SmallThinker-4B shapes (spec §1.1): head_dim 128,
  // 12 query heads over 2 kv heads, n_embd 1536, 32 experts of n_ff_exp 768, 4 used.
  {
    auto buffer = [&](uint64_t bytes, const char* name) {
      auto buf = gpu::Buffer::create(d, bytes, gpu::MemoryIntent::shared, name);
      if (buf.ok() && buf->host_data() != nullptr) std::memset(buf->host_data(), 0, bytes);
      return buf;
    };
    // Times one recorded op (timestamps where the device has them, else wall time).
    auto time_op = [&](const std::function<Status()>& record) -> std::optional<Stats> {
      std::vector<double> times;
      for (int r = -1; r < reps; ++r) {
        if (!(*rec)->begin().ok()) return std::nullopt;
        (*rec)->timestamp("begin");
        const Status s = record();
        if (!s.ok()) {
          fmt::print("error: {}\n", s.message());
          return std::nullopt;
        }
        (*rec)->timestamp("end");
        const auto t0 = Clock::now();
        if (!(*rec)->submit_and_wait().ok()) return std::nullopt;
        const double wall = seconds_since(t0);
        auto ts = (*rec)->timestamps();
        if (r >= 0) times.push_back(ts.ok() && ts->size() == 2 && ts->at(1).ms > 0 ? ts->at(1).ms * 1e-3 : wall);
      }
      return stats(times);
    };
    auto report = [&](const std::string& name, const std::optional<Stats>& st, double bytes) {
      if (!st) return;
      fmt::print("{:<44} {:>9.2f} GB/s [{:.2f}, {:.2f}]  {:.1f} us/call\n", name, bytes / st->median / 1e9,
                 bytes / st->max / 1e9, bytes / st->min / 1e9, st->median * 1e6);
    };
    const int64_t hd = 128, n_head = 12, n_head_kv = 2, n_embd = 1536, n_ff = 768, n_expert = 32, k = 4;
    const int64_t n_ctx = 4096;
    const uint64_t kv_bytes = static_cast<uint64_t>(hd * n_head_kv * n_ctx) * 2;  // f16
    auto kc = buffer(kv_bytes, "cache_k"), vc = buffer(kv_bytes, "cache_v");
    auto q = buffer(static_cast<uint64_t>(hd * n_head * 64) * 4, "q");
    auto out = buffer(static_cast<uint64_t>(hd * n_head * 64) * 4, "dst");
    auto pos = buffer(64 * 4, "pos");
    auto scratch = buffer(std::max<uint64_t>(4, gpu::ops::flash_attn_scratch_bytes(hd, n_head, n_ctx, 1)), "scratch");
    if (kc.ok() && vc.ok() && q.ok() && out.ok() && pos.ok() && scratch.ok() && pos->host_data() != nullptr) {
      for (int64_t m : {int64_t{1}, int64_t{64}}) {
        // m = 1: the last position (the whole cache is read); m = 64: a 64-token prompt chunk
        // ending at position 511 (each row reads its own prefix: 64 * 480 positions on average).
        std::vector<int32_t> p(static_cast<size_t>(m));
        for (int64_t i = 0; i < m; ++i) p[i] = static_cast<int32_t>(m == 1 ? n_ctx - 1 : 448 + i);
        std::memcpy(pos->host_data(), p.data(), p.size() * 4);
        double positions = 0;
        for (int32_t v : p) positions += v + 1;
        for (auto variant : gpu::ops::flash_attn_variants(d, DType::f16)) {
          const auto st = time_op([&] {
            return gpu::ops::flash_attn(**rec, q->slice(), kc->slice(), vc->slice(), DType::f16, pos->slice(), hd,
                                        n_head, n_head_kv, n_ctx, m, 0, 0.088f, scratch->slice(), out->slice(),
                                        variant);
          });
          // K and V bytes the rows must read (per kv head; GQA heads share them in caches).
          report(fmt::format("flash_attn_f16 {} m={} ({} pos)", gpu::ops::shader_variant_name(variant), m,
                             m == 1 ? n_ctx : 512),
                 st, positions * static_cast<double>(hd * n_head_kv) * 2 * 2);
        }
      }
      std::memcpy(pos->host_data(), std::vector<int32_t>{static_cast<int32_t>(n_ctx - 1)}.data(), 4);
      report("set_rows_f16 (k_cur, 1 token)", time_op([&] {
               return gpu::ops::set_rows(**rec, q->slice(), hd * n_head_kv, 1, pos->slice(), DType::f16, kc->slice(),
                                         n_ctx);
             }),
             static_cast<double>(hd * n_head_kv) * 6);
    }
    const uint64_t emb_bytes = dtype_row_size(DType::q8_0, n_embd) * 151936;
    auto emb = buffer(emb_bytes, "token_embd.weight");
    auto ids = buffer(64 * k * 4, "ids");
    auto x = buffer(static_cast<uint64_t>(n_embd * k * 64) * 4, "x");
    if (emb.ok() && ids.ok() && x.ok()) {
      report("get_rows_q8_0 (64 tokens)", time_op([&] {
               return gpu::ops::get_rows(**rec, DType::q8_0, emb->slice(), n_embd, 151936, ids->slice(), 64,
                                         x->slice());
             }),
             static_cast<double>(dtype_row_size(DType::q8_0, n_embd) + n_embd * 4) * 64);
    }
    auto logits = buffer(static_cast<uint64_t>(n_expert * 64) * 4, "router_logits");
    auto wts = buffer(64 * k * 4, "weights");
    if (logits.ok() && ids.ok() && wts.ok()) {
      for (int64_t m : {int64_t{1}, int64_t{64}}) {
        for (auto variant : gpu::ops::top_k_variants(d)) {
          report(fmt::format("top_k {} sigmoid {}x{} k={}", gpu::ops::shader_variant_name(variant), n_expert, m, k),
                 time_op([&] {
                   return gpu::ops::top_k(**rec, ExpertGating::sigmoid, logits->slice(), n_expert, m, k,
                                          ids->slice(), wts->slice(), variant);
                 }),
                 static_cast<double>(n_expert * m) * 4);
        }
      }
    }
    const uint64_t exp_bytes = dtype_row_size(DType::q4_0, n_embd) * static_cast<uint64_t>(n_ff * n_expert);
    auto gate = buffer(exp_bytes, "ffn_gate_exps");
    auto h = buffer(static_cast<uint64_t>(n_ff * k * 16) * 4, "gate_out");
    if (gate.ok() && ids.ok() && x.ok() && h.ok() && ids->host_data() != nullptr) {
      std::vector<int32_t> e(static_cast<size_t>(k * 16));
      for (size_t i = 0; i < e.size(); ++i) e[i] = static_cast<int32_t>((i * 7) % n_expert);
      std::memcpy(ids->host_data(), e.data(), e.size() * 4);
      // Each of the k * m slots reads its expert's whole matrix (no sharing across tokens yet).
      for (auto variant : gpu::ops::mul_mat_id_variants(d, DType::q4_0)) {
        report(fmt::format("mul_mat_id_q4_0 {} 1536x768 k=4 m=16", gpu::ops::shader_variant_name(variant)),
               time_op([&] {
                 return gpu::ops::mul_mat_id(**rec, DType::q4_0, gate->slice(), n_embd, n_ff, n_expert,
                                             ids->slice(), k, 16, x->slice(), 1, h->slice(), variant);
               }),
               static_cast<double>(exp_bytes / n_expert) * k * 16);
      }
    }
    auto eo = buffer(static_cast<uint64_t>(n_embd * k * 64) * 4, "expert_out");
    if (eo.ok() && wts.ok() && out.ok()) {
      report("moe_sum 1536 k=4 m=64", time_op([&] {
               return gpu::ops::moe_sum(**rec, eo->slice(), wts->slice(), n_embd, k, 64, out->slice());
             }),
             static_cast<double>(n_embd * k * 64 + n_embd * 64) * 4);
    }
  }

  // Upload bandwidth through the staging ring into device_weights memory.
  auto ring = gpu::StagingRing::create(d, 16ull << 20, 4);
  const size_t up_bytes = 64ull << 20;
  auto dst = gpu::Buffer::create(d, up_bytes, gpu::MemoryIntent::device_weights, "upload target");
  if (ring.ok() && dst.ok()) {
    std::vector<uint8_t> src(up_bytes, 3);
    t.clear();
    for (int r = -1; r < reps; ++r) {
      const auto t0 = Clock::now();
      if (!(*ring)->upload(dst->slice(), src.data(), up_bytes).ok() || !(*ring)->wait_idle().ok()) return 1;
      if (r >= 0) t.push_back(seconds_since(t0));
    }
    const Stats st = stats(t);
    fmt::print("{:<44} {:>9.2f} GB/s [{:.2f}, {:.2f}]  ({} MiB, {} queue)\n", "staging upload", up_bytes / st.median / 1e9,
               up_bytes / st.max / 1e9, up_bytes / st.min / 1e9, up_bytes >> 20,
               (*ring)->on_transfer_queue() ? "transfer" : "compute");
  }
  return 0;
}
