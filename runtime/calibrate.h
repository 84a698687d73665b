// calibrate: measures this machine and fills a HardwareProfile (planner/hardware_profile.h,
// schema_version 1) for `tandem plan` and `tandem simulate` — issue 6 item 3.
//
// What is measured, and how (units as the schema: GB/s = 1e9 B/s, microseconds, bytes):
//   system   ram_bytes (sysinfo totalram), CPU model name (/proc/cpuinfo), cores
//            (distinct core ids of sched_getaffinity's CPUs), hardware threads.
//   cpu      one cpu.isa entry per (Isa the host and build can run, thread count), thread
//            counts 1, 2, 4, ... and all threads:
//              read_bandwidth_gbps  cpu::measure_read_bandwidth with that Isa's widest loads;
//              expert_ffn_dense_us  cpu::expert_ffn, FfnMode::dense, one token, one expert at
//                                   `shape` (ggml ne: gate/up [n_embd, n_ff_exp], down
//                                   [n_ff_exp, n_embd], `expert_dtype`), cycling over a pool of
//                                   synthetic experts larger than the caches, so weights come
//                                   from RAM as in decode;
//              expert_ffn_gate_us   the same in FfnMode::sparse with a gate that no token
//                                   activates (gate rows only: the schema's "no neuron active");
//              compute_gflops       cpu::expert_ffn dense on a batch of k_prefill_tokens tokens:
//                                   6 * n_embd * n_ff_exp * n_tok FLOP / time (prefill roofline);
//              attention_us         0 (derived by the cost model from bytes and bandwidth).
//   gpus     only the device `device` selects (gpu/device_select.h; "auto" never picks a software
//            device such as lavapipe, "none" skips the GPU): memory_bytes (device-local heaps),
//            upload_gbps through the StagingRing into a device_weights buffer, zero_copy_gbps
//            (mul_mat_vec reading imported host memory; 0 without host import), bandwidth_gbps
//            (mul_mat_vec over weights in device memory), expert_ffn_us (one expert, one
//            token, as the GPU executors run it: gate, the ReLU-sparse up, reglu and the down
//            the layout allows (sparse for transposed), with 60% of gate outputs <= 0
//            (k_gpu_expert_inactive_fraction, spec §5.1), averaged over a batch of experts in
//            one submission; the dense time goes to `notes`), compute_gflops (mul_mat on a k_prefill_tokens batch),
//            submit_wait_us (an empty submission and its wait), attention_us 0 (derived).
//   storage  random reads of one expert slab (n_ff_exp rows of n_embd in expert_dtype, the
//            unit the expert cache reads) at 4096-aligned offsets through AsyncReader
//            (io_uring, O_DIRECT) at queue depths 1, 4, 16, 32: throughput per depth, mean
//            latency at depth 1 as latency_us; every depth's mean latency goes to `notes`.
//            The file is `storage_file` when given (e.g. the model), else a temporary file of
//            `storage_temp_bytes` written (and fsync'd) in `storage_dir` and removed after.
//   Every figure is the best (bandwidths) or the median (times) of a few repetitions after a
//   warm-up; `notes` record the method, the shape, the build type and each storage depth.
//
// Errors (Status with the path or device named): invalid_argument for a bad shape or option,
// not_found for a --device that does not exist, io_error for a storage directory that cannot
// be written or lacks the space for the temporary file, out_of_memory for buffers that cannot
// be allocated, device_error for Vulkan failures. The partial figures are discarded.
// Threading: runs on the calling thread (and the threads it starts); not re-entrant.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/model_shape.h"
#include "core/status.h"
#include "planner/hardware_profile.h"

namespace tandem {

// Tokens of the batch the prefill compute figures (compute_gflops) are measured with.
inline constexpr int64_t k_prefill_tokens = 64;

struct CalibrateOptions {
  std::string name = "this-machine";  // HardwareProfile::name
  ModelShape shape;                   // expert shape (n_embd, n_ff_exp) the expert times use
  DType expert_dtype = DType::q4_0;   // q4_0 or q8_0 (what cpu::expert_ffn runs)
  std::string shape_source;           // "preset 4b" or the model path, for the notes
  int max_threads = 0;                // largest CPU thread count measured (0 = all)
  std::string device = "auto";        // gpu/device_select.h choice
  std::filesystem::path storage_file;  // read this file when set (no temporary file)
  std::filesystem::path storage_dir = ".";
  uint64_t storage_temp_bytes = 2ull << 30;
  bool quick = false;  // small buffers and short runs (tests): figures are rougher
  // Called with one line per step ("cpu avx512 x2: read 18.3 GB/s ..."); may be empty.
  std::function<void(std::string_view)> progress;
};

Result<HardwareProfile> calibrate(const CalibrateOptions& options);

}  // namespace tandem
