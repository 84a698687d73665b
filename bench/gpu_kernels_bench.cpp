// GPU kernel throughput on the chosen Vulkan device: mul_mat_vec GB/s per weight dtype
// (weight bytes read per second, both reduction variants), and staging upload bandwidth,
// each beside a host memcpy bandwidth measured in the same run for scale.
//
//   gpu_kernels_bench [--device auto|cpu|N] [--rows R] [--cols K] [--reps N]
//
// Figures on a CPU device (lavapipe) measure the CPU running SPIR-V and say nothing about
// GPUs; the bench prints that warning. Exits 0 with a message when there is no device.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/instance.h"
#include "gpu/ops/mul_mat_vec.h"
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
  fmt::print("{:<34} {:>9.2f} GB/s (read+write {:.2f} GB/s)\n", "host memcpy (reference)", ref_bytes / host.median / 1e9,
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
    if (!wb.ok() || !xb.ok() || !db.ok()) {
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
    for (auto variant : {gpu::ops::ReductionVariant::portable, gpu::ops::ReductionVariant::subgroup}) {
      auto name = gpu::ops::mul_mat_vec_variant(d, dt, variant);
      if (!name.ok()) continue;
      gpu::ops::MulMatVecOptions mo;
      mo.variant = variant;
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
      fmt::print("{:<34} {:>9.2f} GB/s [{:.2f}, {:.2f}]  {:.3f} ms  ({:.1f} MiB weights)\n", *name,
                 bytes / st.median / 1e9, bytes / st.max / 1e9, bytes / st.min / 1e9, st.median * 1e3,
                 bytes / 1048576.0);
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
    fmt::print("{:<34} {:>9.2f} GB/s [{:.2f}, {:.2f}]  ({} MiB, {} queue)\n", "staging upload", up_bytes / st.median / 1e9,
               up_bytes / st.max / 1e9, up_bytes / st.min / 1e9, up_bytes >> 20,
               (*ring)->on_transfer_queue() ? "transfer" : "compute");
  }
  return 0;
}
