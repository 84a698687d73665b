// GPU part of calibrate (runtime/calibrate.h): upload, zero-copy and device bandwidth, one
// expert's time (dense, and ReLU-sparse as the executors run it: calibrate_probes.h), batch
// GFLOP/s and submit-and-wait latency of one device.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>

#include "core/quant_blocks.h"
#include "gpu/buffer.h"
#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/device_select.h"
#include "gpu/instance.h"
#include "gpu/ops/mul_mat.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/ops/mul_mat_vec_t_id.h"
#include "gpu/ops/reglu.h"
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

// `notes`: the expert timing's method and its dense figure (GpuProfile has no field for it).
Status measure(const CalibrateOptions& o, GpuSetup& g, GpuProfile& out,
               std::vector<std::string>& notes) {
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
  // Slabs [0, n_pool) are the expert timing's gate tensor: k_gpu_expert_inactive_fraction of
  // each expert's rows inactive for x = k_expert_probe_x.
  const auto n_inactive = static_cast<int64_t>(
      std::llround(k_gpu_expert_inactive_fraction * static_cast<double>(n_ff)));
  for (int64_t e = 0; e < 3 * n_pool; ++e) {
    uint8_t* at = host.data() + static_cast<uint64_t>(e) * slab;
    if (e < n_pool) {
      fill_gate_slab(wtype, at, n_embd, n_ff, n_inactive, static_cast<uint64_t>(e));
    } else {
      fill_synthetic_slab(wtype, at, slab, static_cast<uint64_t>(e), false);
    }
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

  // One expert for one token, a batch of experts in one submission so that the figure is
  // kernel time, not submission overhead. Dense: every row of gate, up and down read (what a
  // dense backend runs). Sparse: the executors' sequence (calibrate_probes.h) on inputs with
  // k_gpu_expert_inactive_fraction of the gate outputs <= 0; that one is expert_ffn_us.
  const int64_t batch = std::min<int64_t>(n_pool, o.quick ? 4 : 32);
  std::vector<int32_t> ids(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7) % n_pool);
  TANDEM_ASSIGN_OR_RETURN(Buffer id_buf, Buffer::create(*g.device, 4 * static_cast<uint64_t>(batch), MemoryIntent::shared, "calibrate.ids"));
  TANDEM_RETURN_IF_ERROR(id_buf.write(ids.data(), 4 * ids.size()));
  TANDEM_ASSIGN_OR_RETURN(Buffer xe, Buffer::create(*g.device, 4 * static_cast<uint64_t>(n_embd),
                                                    MemoryIntent::shared, "calibrate.expert_x"));
  const std::vector<float> xe_host(static_cast<size_t>(n_embd), k_expert_probe_x);
  TANDEM_RETURN_IF_ERROR(xe.write(xe_host.data(), 4 * xe_host.size()));
  const uint64_t tensor = static_cast<uint64_t>(n_pool) * slab;
  const BufferSlice gate = weights.slice(0, tensor), up = weights.slice(tensor, tensor),
                    down = weights.slice(2 * tensor, tensor);
  const BufferSlice dg = dst.slice(0, 4 * n_ff), du = dst.slice(4 * n_ff, 4 * n_ff),
                    dd = dst.slice(8 * n_ff, 4 * n_embd);
  const BufferSlice x_expert = xe.slice(0, 4 * static_cast<uint64_t>(n_embd));
  const bool transposed = o.shape.down_layout == DownLayout::transposed;
  auto expert = [&](bool sparse) {
    return time_submission(*g.rec, reps, [&]() -> Status {
      for (int64_t i = 0; i < batch; ++i) {
        const BufferSlice id = id_buf.slice(4 * static_cast<uint64_t>(i), 4);
        TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, gate, n_embd, n_ff, n_pool,
                                                        id, 1, x_expert, true, dg));
        gpu::ops::MulMatVecIdOptions uo;
        if (sparse) uo.skip_if_gate_le_zero = dg;
        TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, up, n_embd, n_ff, n_pool, id,
                                                        1, x_expert, true, du, uo));
        TANDEM_RETURN_IF_ERROR(gpu::ops::reglu(*g.rec, dg, du, n_ff, dg));
        if (sparse && transposed) {
          TANDEM_RETURN_IF_ERROR(
              gpu::ops::mul_mat_vec_t_id(*g.rec, wtype, down, n_embd, n_ff, n_pool, id, 1, dg, dd));
        } else {
          TANDEM_RETURN_IF_ERROR(gpu::ops::mul_mat_vec_id(*g.rec, wtype, down, n_ff, n_embd, n_pool,
                                                          id, 1, dg, false, dd));
        }
      }
      return Status::success();
    });
  };
  TANDEM_ASSIGN_OR_RETURN(double dense_s, expert(false));
  TANDEM_ASSIGN_OR_RETURN(double sparse_s, expert(true));
  // What the last expert's reglu left: exact zeros where the gate was <= 0 (relu(g) * u), so
  // their share says the inputs did what they were built for.
  std::vector<float> h(static_cast<size_t>(n_ff));
  TANDEM_RETURN_IF_ERROR(dst.read(h.data(), 4 * h.size()));
  const double inactive =
      static_cast<double>(std::count(h.begin(), h.end(), 0.0f)) / static_cast<double>(n_ff);
  const double dense_us = dense_s / static_cast<double>(batch) * 1e6;
  out.expert_ffn_us = sparse_s / static_cast<double>(batch) * 1e6;
  const char* down_op = transposed ? "transposed down, sparse mul_mat_vec_t_id"
                                   : "standard down, dense mul_mat_vec_id";
  progress(
      o,
      fmt::format(
          "gpu expert (1 token): dense {:.1f} us, sparse {:.1f} us ({:.1f}% of gate outputs <= 0; "
          "sparse up, {})",
          dense_us, out.expert_ffn_us, 100.0 * inactive, down_op));
  notes.push_back(fmt::format(
      "gpu expert_ffn_us: gate, ReLU-sparse up, reglu, {} (as the GPU executors run it) with "
      "{:.1f}% of gate outputs <= 0; every row read (dense): {:.1f} us",
      down_op, 100.0 * inactive, dense_us));

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
  std::vector<std::string> notes;
  Status s = measure(o, g, out, notes);
  if (!s.ok()) return s.with_context("calibrate: gpu " + caps.name);
  hw.gpus.push_back(std::move(out));
  for (std::string& n : notes) hw.notes.push_back(std::move(n));
  if (caps.is_software()) {
    hw.notes.push_back("gpu: " + caps.name + " is a software Vulkan device (runs on the CPU), measured because --device chose it");
  }
  return Status::success();
}

void fill_gate_slab(DType dtype, uint8_t* dst, int64_t n_embd, int64_t n_ff, int64_t n_inactive,
                    uint64_t seed) {
  const uint64_t row = dtype_row_size(dtype, n_embd);
  fill_synthetic_slab(dtype, dst, row * static_cast<uint64_t>(n_ff), seed, /*all_positive=*/true);
  std::vector<int64_t> rows(static_cast<size_t>(n_ff));
  std::iota(rows.begin(), rows.end(), int64_t{0});
  std::mt19937_64 rng(seed * 0xD1B54A32D192ED03ull + 7);
  std::shuffle(rows.begin(), rows.end(), rng);
  // With x = -1 an all-positive row gives a negative dot product; the most negative quants
  // (q4_0 nibble 0 = -8, q8_0 -127) a positive one.
  for (size_t i = static_cast<size_t>(std::clamp<int64_t>(n_inactive, 0, n_ff)); i < rows.size();
       ++i) {
    uint8_t* r = dst + static_cast<uint64_t>(rows[i]) * row;
    if (dtype == DType::q4_0) {
      auto* b = reinterpret_cast<block_q4_0*>(r);
      for (uint64_t k = 0; k < row / sizeof(block_q4_0); ++k)
        std::memset(b[k].qs, 0x00, sizeof(b[k].qs));
    } else {
      auto* b = reinterpret_cast<block_q8_0*>(r);
      for (uint64_t k = 0; k < row / sizeof(block_q8_0); ++k)
        std::memset(b[k].qs, 0x81, sizeof(b[k].qs));  // -127
    }
  }
}

}  // namespace tandem::calibrate_detail
