// make_executor: the one place that turns the user's placement choice (`--placement`,
// `--device`, `--plan`, `--mem-limit`) into an Executor (executor.h) for a loaded Model.
//   cpu    : CpuExecutor (cpu_executor.h); with --mem-limit, --plan or --trace the
//            StreamingExecutor (streaming_executor.h): experts the memory cannot hold (or the
//            plan puts in storage) are streamed from the file into a RAM cache, prefetched as
//            soon as the router has chosen them.
//   gpu    : every layer, the KV cache and the output head on one Vulkan device.
//   hybrid : a placement plan (planner/plan.h) split between the GPU and the CPU.
//   auto   : (the command line's default) no plan -> cpu; a plan that puts anything on the GPU
//            (attention, output head or a gpu_pinned/gpu_dynamic expert) -> hybrid; a plan that
//            keeps everything on the CPU (what `tandem plan` makes for a machine without a GPU)
//            -> cpu, running that plan (RAM and storage tiers) on the StreamingExecutor.
//            resolve_placement() says which, before anything is loaded.
// Errors: invalid_argument for an unknown placement or cpu_ops name; the executors' own
// (no Vulkan device, out of memory); not_found / invalid_file for the plan file;
// invalid_argument for a plan or profile made for another model (its model_hash);
// invalid_argument for transpose_down on a standard-layout model with any executor but the
// plain CpuExecutor (gpu, hybrid, or cpu with --mem-limit/--plan/--trace, also when "auto"
// resolved to one of them: the message names the resolved placement and the streaming
// executor's flags), pointing at `tandem convert --transpose-down IN OUT`. For a model already
// transposed (ModelShape::down_layout) transpose_down is a no-op everywhere, as in CpuExecutor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/status.h"
#include "planner/plan.h"
#include "runtime/executor.h"
#include "runtime/model.h"

namespace tandem {

struct ExecutorOptions {
  std::string placement = "cpu";  // --placement: cpu | gpu | hybrid | auto
  std::string device;             // --device: "" = best discrete, else integrated; "cpu" = software; N
  std::string cpu_ops = "fast";   // fast (SIMD kernel table) | plain (portable reference-style C++)
  uint32_t n_ctx = 4096;          // resolved (> 0)
  uint32_t n_ubatch = 512;
  int n_threads = 0;
  DType cache_type = DType::f16;
  std::filesystem::path plan;     // --plan
  uint64_t mem_limit = 0;         // --mem-limit, bytes; 0 = none
  std::filesystem::path trace;    // --trace (Chrome trace JSON)
  std::string cache_policy = "lru";  // --cache-policy: lru | frequency (streamed experts' RAM cache, GPU slots)
  // --profile: a model profile (`tandem profile`) whose activation probabilities are the
  // frequency policy's prior (cache_policy.h); without it the frequency policy is plain LRFU.
  std::filesystem::path profile;
  // --transpose-down: the plain cpu placement only (cpu_executor.h); refused elsewhere (above).
  bool transpose_down = false;
  // The plain cpu placement's repack of expert up/down rows (cpu_executor.h); false = --no-repack.
  bool repack = true;
};

// The placement "auto" stands for, given the plan (nullptr: none); other names unchanged.
std::string resolve_placement(std::string_view placement, const Plan* plan);
// True when the plan runs anything on the GPU: attention, output head or a GPU-tier expert.
bool plan_uses_gpu(const Plan& plan);

// `model` must outlive the executor.
Result<std::unique_ptr<Executor>> make_executor(const Model& model, const ExecutorOptions& options);

}  // namespace tandem
