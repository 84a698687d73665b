// Pipeline: a compute pipeline built from an embedded SPIR-V variant (shaders/spirv.h) with
// its specialization constants (workgroup / tile sizes: constant_id i = spec[i]) and a push-
// constant block (per-dispatch shapes). Every binding is a storage buffer, set 0, bindings
// 0..n_bindings-1 in the order the shader names them (weights/src first, dst last).
// PipelineCache: builds each (variant, spec constants) once and keeps it, on top of a
// VkPipelineCache. Errors: unknown variant -> not_found; Vulkan failure -> device_error.
// Threading: one thread at a time. Lifetime: the Device outlives the cache.
#pragma once

#include <vulkan/vulkan.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "gpu/device.h"

namespace tandem::gpu {

struct PipelineDesc {
  std::string variant;            // e.g. "mul_mat_vec_q4_0_f32"
  uint32_t n_bindings = 0;
  uint32_t push_constant_size = 0;  // bytes, a multiple of 4
  std::vector<uint32_t> spec;     // specialization constants by constant_id
  auto operator<=>(const PipelineDesc&) const = default;
};

class Pipeline {
 public:
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  VkPipeline handle() const { return pipeline_; }
  VkPipelineLayout layout() const { return layout_; }
  VkDescriptorSetLayout set_layout() const { return set_layout_; }
  const PipelineDesc& desc() const { return desc_; }

 private:
  friend class PipelineCache;
  Pipeline() = default;
  VkDevice device_ = VK_NULL_HANDLE;
  VkShaderModule module_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  PipelineDesc desc_;
};

class PipelineCache {
 public:
  static Result<std::unique_ptr<PipelineCache>> create(const Device& device);
  ~PipelineCache();
  PipelineCache(const PipelineCache&) = delete;
  PipelineCache& operator=(const PipelineCache&) = delete;

  const Device& device() const { return device_; }
  // The pipeline for `desc`, built on first use.
  Result<const Pipeline*> get(const PipelineDesc& desc);
  size_t size() const { return pipelines_.size(); }

 private:
  explicit PipelineCache(const Device& device) : device_(device) {}
  const Device& device_;
  VkPipelineCache cache_ = VK_NULL_HANDLE;
  std::map<PipelineDesc, std::unique_ptr<Pipeline>> pipelines_;
};

}  // namespace tandem::gpu
