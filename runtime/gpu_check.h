// The GPU shadow check (TANDEM_CHECK_GPU=1, issue 5 item 5; ggml's GGML_VULKAN_CHECK_RESULTS,
// STYLE habit 6): the GPU executor runs its graph one step at a time; for each step the
// checker reads the step's inputs back before it runs, submits it alone and waits, reads its
// outputs back, and hands both to the step's verifier, which recomputes the outputs with the
// plain CPU ops (runtime/forward_ops.h make_cpu_ops) from the GPU's own inputs and returns the
// NMSE sum((gpu - cpu)^2) / sum(cpu^2) (llama.cpp test-backend-ops). A step whose NMSE exceeds
// its tolerance (gpu_check_tolerance) stops the evaluation with an internal error naming the
// op, layer, tensor and NMSE; each check is logged at debug level.
//
// A step is one ggml-named op (mul_mat, rms_norm, rope, set_rows, flash_attn, add, top_k,
// get_rows) or, for the expert FFN, the group mul_mat_id(gate, up) + reglu + mul_mat_id(down)
// + moe_sum named "moe" (checked against ForwardOps::moe). Steps without a verifier (the
// read-back copies) just run.
//
// Threading: one thread. Lifetime: the Device and CommandRecorder outlive the checker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace tandem {

namespace gpu {
class Buffer;
class CommandRecorder;
class Device;
struct BufferSlice;
}  // namespace gpu

// Test hook: after the step whose op is `op` (e.g. "mul_mat(attn_output)") on layer `layer`
// (-1: any) runs, its first output is perturbed ON THE DEVICE (every value v becomes
// v * 1.5 + 1), so the check must catch it and so would every later step.
struct GpuCheckFault {
  std::string op;
  int32_t layer = -1;
};

struct GpuStepInfo {
  std::string op;            // "mul_mat(attn_q)", "flash_attn", "moe", ...
  int32_t layer = -1;        // -1: outside the layers (get_rows, output head)
  DType wtype = DType::f32;  // dtype of the weights the step reads (tolerance), f32 when none
};

// NMSE bound for a step: f32 math on both sides differs only by summation order (1e-9 for
// f32/f16 weights); q8_0/q4_0 mul_mat differs by the CPU's q8_0 quantization of the
// activations, which the shaders do not do (ggml's CPU backend quantizes, its Vulkan backend
// does not): ~2^-8 relative per element, twice in a row in the expert FFN (measured up to
// 1.1e-4 on the tiny models) -> 1e-3, still ~1000x below what a wrong op gives; f16 caches add the
// f16 rounding of K/V (both sides round the same values: 1e-6 for flash_attn).
double gpu_check_tolerance(const GpuStepInfo& step);

class GpuChecker {
 public:
  using Bytes = std::vector<uint8_t>;
  using Record = std::function<Status(gpu::CommandRecorder&)>;
  // Returns the NMSE of the step's outputs against its CPU recomputation.
  using Verify =
      std::function<Result<double>(std::span<const Bytes> inputs, std::span<const Bytes> outputs)>;

  GpuChecker(const gpu::Device& device, gpu::CommandRecorder& rec);
  ~GpuChecker();

  // Runs one step as described above. Errors: the step's own, Vulkan's, or internal naming the
  // first divergence: "shadow check: mul_mat(attn_q) on layer 2 diverges: NMSE 3.1e-02 > 1e-09".
  Status step(const GpuStepInfo& info, std::span<const gpu::BufferSlice> inputs,
              std::span<const gpu::BufferSlice> outputs, const Record& record,
              const Verify& verify);

  void set_fault(const GpuCheckFault& fault) { fault_ = fault; }
  uint64_t steps_checked() const { return checked_; }

  // The bytes of `slice` now (a copy into a readback buffer, submitted and waited for).
  Result<Bytes> download(const gpu::BufferSlice& slice);
  // Overwrites `slice` with `bytes` (through an upload buffer and a copy).
  Status upload(const gpu::BufferSlice& slice, std::span<const uint8_t> bytes);

 private:
  Status perturb(const gpu::BufferSlice& slice);
  const gpu::Device& device_;
  gpu::CommandRecorder& rec_;
  std::unique_ptr<gpu::Buffer> readback_, upload_;
  GpuCheckFault fault_;
  uint64_t checked_ = 0;
};

// Helpers for verifiers.
std::vector<float> check_f32(std::span<const uint8_t> bytes);  // reinterpret as f32 values
std::vector<int32_t> check_i32(std::span<const uint8_t> bytes);
// f32 or f16 bytes as f32 values.
std::vector<float> check_values(std::span<const uint8_t> bytes, DType type);
double check_nmse(std::span<const float> actual, std::span<const float> expected);

}  // namespace tandem
