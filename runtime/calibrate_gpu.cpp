// GPU part of calibrate (runtime/calibrate.h): upload, zero-copy and device bandwidth, one
// expert's mul_mat_vec_id time, batch GFLOP/s and submit-and-wait latency of one device.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

#include "gpu/buffer.h"
#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/device_select.h"
#include "gpu/instance.h"
#include "gpu/ops/mul_mat.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/pipeline.h"
#include "gpu/staging_ring.h"
#include "runtime/calibrate_probes.h"

namespace tandem::calibrate_detail {
namespace {

using Clock = std::chrono::steady_clock;
using gpu::Buffer;
using gpu::BufferSlice;
using gpu::CommandRecorder;
using gpu::MemoryIntent;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Median seconds of one submission of what `record` records: GPU timestamps around the work
// where the device has them (no host wake-up in the figure), else the host's wall clock.
template <class Fn>
Result<double> time_submission(CommandRecorder& rec, int reps, Fn&& record) {
  std::vector<double> t;
  for (int i = 0; i < reps + 1; ++i) {
    TANDEM_RETURN_IF_ERROR(rec.begin());
    rec.timestamp("start");
    TANDEM_RETURN_IF_ERROR(record());
    rec.timestamp("end");
    const auto t0 = Clock::now();
    TANDEM_RETURN_IF_ERROR(rec.submit_and_wait());
    double s = seconds_since(t0);
    TANDEM_ASSIGN_OR_RETURN(auto stamps, rec.timestamps());
    if (stamps.size() == 2 && stamps[1].ms > 0) s = stamps[1].ms * 1e-3;
    if (i > 0) t.push_back(s);  // the first run creates pipelines and descriptor pools
  }
  return median(std::move(t));
}

struct GpuSetup {
  std::unique_ptr<gpu::Instance> instance;
  std::unique_ptr<gpu::Device> device;
  std::unique_ptr<gpu::PipelineCache> pipelines;
  std::unique_ptr<CommandRecorder> rec;
  std::unique_ptr<gpu::StagingRing> staging;
};

Status measure(const CalibrateOptions& o, GpuSetup& g, GpuProfile& out) {
  const gpu::DeviceCaps& caps = g.device->caps();
  const DType wtype = o.expert_dtype;
  const int64_t n_embd = o.shape.n_embd, n_ff = o.shape.n_ff_exp;
  const uint64_t row = dtype_row_size(wtype, n_embd);
  const uint64_t slab = expert_slab_bytes(o);
  // One weight buffer serves every test: read whole as a matrix, or as
  // gate/up/down expert tensors of n_pool experts each.
  uint64_t want = o.quick ? (8ull << 20) : (256ull << 20);
  if (caps.max_storage_buffer_range) want = std::min(want, caps.max_storage_buffer_range);
  if (caps.max_memory_allocation_size) want = std::min(want, caps.max_memory_allocation_size);
  const int64_t n_pool = static_cast<int64_t>(want / (3 * slab));
  if (n_pool < 1) {
    return make_error(ErrorCode::unsupported, "calibrate: {} cannot hold one expert ({} bytes) in a buffer", caps.name,
                      3 * slab);
  }
  const uint64_t bytes = static_cast<uint64_t>(n_pool) * 3 * slab;
  // The bandwidth GEMV reads the buffer as wide rows: one workgroup per row, so narrow rows
  // (a small n_embd) would time workgroup overhead instead of memory.
  const int64_t bw_cols = bytes >= 64 * dtype_row_size(wtype, 4096) ? std::max<int64_t>(n_embd, 4096) : n_embd;
  const int64_t bw_rows = static_cast<int64_t>(bytes / dtype_row_size(wtype, bw_cols));
  const int64_t rows = static_cast<int64_t>(bytes / row);
  std::vector<uint8_t> host(bytes);
  for (int64_t e = 0; e < 3 * n_pool; ++e) {
    fill_synthetic_slab(wtype, host.data() + static_cast<uint64_t>(e) * slab, slab, static_cast<uint64_t>(e), false);
  }
  const int reps = o.quick ? 2 : 5;

  // Upload through the staging ring (the path discrete GPUs take for weights).
  TANDEM_ASSIGN_OR_RETURN(Buffer weights, Buffer::create(*g.device, bytes, MemoryIntent::device_weights, "calibrate.weights"));
  double best_upload = 0;
  for (int i = 0; i < reps + 1; ++i) {
    const auto t0 = Clock::now();
    TANDEM_RETURN_IF_ERROR(g.staging->upload(weights.slice(), host.data(), bytes));
    TANDEM_RETURN_IF_ERROR(g.staging->wait_idle());
    const double s = seconds_since(t0);
    if (i > 0 && (best_upload == 0 || s < best_upload)) best_upload = s;
  }
  out.upload_gbps = static_cast<double>(bytes) / best_upload / 1e9;
  progress(o, fmt::format("gpu upload (staging ring, {} MiB): {:.2f} GB/s", bytes >> 20, out.upload_gbps));

  const int64_t x_len = std::max<int64_t>(std::max<int64_t>(n_embd, n_ff) * k_prefill_tokens, bw_cols);
  TANDEM_ASSIGN_OR_RETURN(Buffer x, Buffer::create(*g.device, 4 * static_cast<uint64_t>(x_len), MemoryIntent::shared, "calibrate.x"));
  std::vector<float> xs(static_cast<size_t>(x_len), 0.5f);
  TANDEM_RETURN_IF_ERROR(x.write(xs.data(), 4 * xs.size()));
  const int64_t mm_rows = std::min<int64_t>(rows, o.quick ? 2 * n_ff : 8 * n_ff);
  const uint64_t dst_floats = std::max<uint64_t>(static_cast<uint64_t>(bw_rows),
                                                 static_cast<uint64_t>(std::max<int64_t>(mm_rows, 3 * n_ff)) * k_prefill_tokens);
  TANDEM_ASSIGN_OR_RETURN(Buffer dst, Buffer::create(*g.device, 4 * dst_floats, MemoryIntent::shared, "calibrate.dst"));

  // Device bandwidth: one GEMV over the whole buffer.
  auto gemv = [&](const Buffer& w) {
    return time_submission(*g.rec, reps, [&] {
      return gpu::ops::mul_mat_vec(*g.rec, wtype, w.slice(0, static_cast<uint64_t>(bw_rows) * dtype_row_size(wtype, bw_cols)),
                                   bw_cols, bw_rows, x.slice(0, 4 * static_cast<uint64_t>(bw_cols)),
                                   dst.slice(0, 4 * static_cast<uint64_t>(bw_rows)));
    });
  };
  const double bw_bytes = static_cast<double>(bw_rows) * static_cast<double>(dtype_row_size(wtype, bw_cols));
  TANDEM_ASSIGN_OR_RETURN(double gemv_s, gemv(weights));
  out.bandwidth_gbps = bw_bytes / gemv_s / 1e9;
  progress(o, fmt::format("gpu mul_mat_vec over device memory: {:.2f} GB/s", out.bandwidth_gbps));

  // Zero copy: the same GEMV reading host pages the device imported.
  out.zero_copy_gbps = 0;
  if (g.device->host_import() && caps.min_imported_host_pointer_alignment > 0) {
    const uint64_t align = std::max<uint64_t>(caps.min_imported_host_pointer_alignment, 4096);
    const uint64_t padded = (bytes + align - 1) / align * align;
    std::unique_ptr<uint8_t, FreeDeleter> pages(static_cast<uint8_t*>(std::aligned_alloc(align, padded)));
    if (!pages) return make_error(ErrorCode::out_of_memory, "calibrate: cannot allocate {} host bytes to import", padded);
    std::memcpy(pages.get(), host.data(), bytes);
    auto imported = Buffer::import_host(*g.device, pages.get(), padded, "calibrate.imported");
    if (imported.ok()) {
      TANDEM_ASSIGN_OR_RETURN(double zc_s, gemv(*imported));
      out.zero_copy_gbps = bw_bytes / zc_s / 1e9;
      progress(o, fmt::format("gpu mul_mat_vec over imported host memory: {:.2f} GB/s", out.zero_copy_gbps));
    } else {
      progress(o, "gpu zero copy: import failed (" + imported.status().message() + "), recorded as 0");
    }
  } else {
    progress(o, "gpu zero copy: no host import on this device, recorded as 0");
  }

  // One expert for one token: gate and up (broadcast x), down on up's output; a batch of
  // experts in one submission, so the figure is kernel time, not submission overhead.
  const int64_t batch = std::min<int64_t>(n_pool, o.quick ? 4 : 32);
  std::vector<int32_t> ids(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7) % n_pool);
  TANDEM_ASSIGN_OR_RETURN(Buffer id_buf, Buffer::create(*g.device, 4 * static_cast<uint64_t>(batch), MemoryIntent::shared, "calibrate.ids"));
  TANDEM_RETURN_IF_ERROR(id_buf.write(ids.data(), 4 * ids.size()));
  const uint64_t tensor = static_cast<uint64_t>(n_pool) * slab;
  const BufferSlice gate = weights.slice(0, tensor), up = weights.slice(tensor, tensor),
                    down = weights.slice(2 * tensor, tensor);
  const BufferSlice dg = dst.slice(0, 4 * n_ff), du = dst.slice(4 * n_ff, 4 * n_ff),
                    dd = dst.slice(8 * n_ff, 4 * n_embd);
  TANDEM_ASSIGN_OR_RETURN(double expert_s, time_submission(*g.rec, reps, [&]() -> Status {
    for (int64_t i = 0; i < batch; ++i) {
      const BufferSlice id = id_buf.slice(4 * static_cast<uint64_t>(i), 4);
      TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, gate, n_embd, n_ff, n_pool, id, 1,
                                                      x.slice(0, 4 * n_embd), true, dg));
      TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, up, n_embd, n_ff, n_pool, id, 1,
                                                      x.slice(0, 4 * n_embd), true, du));
      TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, down, n_ff, n_embd, n_pool, id, 1, du, false, dd));
    }
    return Status::success();
  }));
  out.expert_ffn_us = expert_s / static_cast<double>(batch) * 1e6;
  progress(o, fmt::format("gpu expert (3 x mul_mat_vec_id, 1 token): {:.1f} us", out.expert_ffn_us));

  // Prefill compute: mul_mat of the gate+up rows of a few experts on a k_prefill_tokens batch.
  TANDEM_ASSIGN_OR_RETURN(double mm_s, time_submission(*g.rec, reps, [&] {
    return gpu::ops::mul_mat(*g.rec, wtype, weights.slice(0, static_cast<uint64_t>(mm_rows) * row), n_embd, mm_rows,
                             x.slice(0, 4 * static_cast<uint64_t>(n_embd) * k_prefill_tokens), k_prefill_tokens,
                             dst.slice(0, 4 * static_cast<uint64_t>(mm_rows) * k_prefill_tokens));
  }));
  out.compute_gflops = 2.0 * static_cast<double>(n_embd) * static_cast<double>(mm_rows) * k_prefill_tokens / mm_s / 1e9;
  progress(o, fmt::format("gpu mul_mat ({} tokens): {:.1f} GFLOP/s", k_prefill_tokens, out.compute_gflops));

  // Submit and wait: an empty submission's round trip, on the host clock.
  std::vector<double> sw;
  for (int i = 0; i < (o.quick ? 8 : 64) + 1; ++i) {
    TANDEM_RETURN_IF_ERROR(g.rec->begin());
    const auto t0 = Clock::now();
    TANDEM_RETURN_IF_ERROR(g.rec->submit_and_wait());
    if (i > 0) sw.push_back(seconds_since(t0) * 1e6);
  }
  out.submit_wait_us = median(std::move(sw));
  progress(o, fmt::format("gpu submit and wait: {:.1f} us", out.submit_wait_us));
  out.attention_us = 0;
  return Status::success();
}

}  // namespace

Status probe_gpu(const CalibrateOptions& o, HardwareProfile& hw) {
  if (o.device == "none") return Status::success();
  gpu::GpuOptions go = gpu::GpuOptions::from_env();
  go.device = o.device;
  const bool automatic = o.device.empty() || o.device == "auto";
  auto instance = gpu::Instance::create(go);
  if (!instance.ok()) {
    if (automatic) {
      progress(o, "gpu: no Vulkan (" + instance.status().message() + "); none measured");
      return Status::success();
    }
    return instance.status();
  }
  GpuSetup g;
  g.instance = std::move(instance).value();
  TANDEM_ASSIGN_OR_RETURN(std::optional<size_t> index, gpu::select_device(g.instance->devices(), o.device));
  if (!index) {
    progress(o, "gpu: none measured (no GPU; a software device such as lavapipe is measured only with --device)");
    return Status::success();
  }
  TANDEM_ASSIGN_OR_RETURN(g.device, gpu::Device::create(*g.instance, *index));
  TANDEM_ASSIGN_OR_RETURN(g.pipelines, gpu::PipelineCache::create(*g.device));
  TANDEM_ASSIGN_OR_RETURN(g.rec, CommandRecorder::create(*g.device, *g.pipelines));
  TANDEM_ASSIGN_OR_RETURN(g.staging, gpu::StagingRing::create(*g.device));
  progress(o, "gpu: " + g.device->summary());

  const gpu::DeviceCaps& caps = g.device->caps();
  GpuProfile out;
  out.name = caps.name;
  out.type = caps.type == gpu::DeviceType::discrete ? GpuType::discrete : GpuType::integrated;
  out.unified_memory = g.device->unified();
  out.memory_bytes = caps.device_local_bytes();
  if (out.memory_bytes == 0) out.memory_bytes = hw.ram_bytes;
  Status s = measure(o, g, out);
  if (!s.ok()) return s.with_context("calibrate: gpu " + caps.name);
  hw.gpus.push_back(std::move(out));
  if (caps.is_software()) {
    hw.notes.push_back("gpu: " + caps.name + " is a software Vulkan device (runs on the CPU), measured because --device chose it");
  }
  return Status::success();
}

}  // namespace tandem::calibrate_detail
