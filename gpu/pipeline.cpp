#include "gpu/pipeline.h"

#include <fmt/format.h>

#include "gpu/vk_status.h"
#include "shaders/spirv.h"

namespace tandem::gpu {

Pipeline::~Pipeline() {
  if (pipeline_ != VK_NULL_HANDLE) vkDestroyPipeline(device_, pipeline_, nullptr);
  if (layout_ != VK_NULL_HANDLE) vkDestroyPipelineLayout(device_, layout_, nullptr);
  if (set_layout_ != VK_NULL_HANDLE) vkDestroyDescriptorSetLayout(device_, set_layout_, nullptr);
  if (module_ != VK_NULL_HANDLE) vkDestroyShaderModule(device_, module_, nullptr);
}

Result<std::unique_ptr<PipelineCache>> PipelineCache::create(const Device& device) {
  std::unique_ptr<PipelineCache> c(new PipelineCache(device));
  VkPipelineCacheCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreatePipelineCache(device.handle(), &ci, nullptr, &c->cache_),
                                  "vkCreatePipelineCache"));
  return c;
}

PipelineCache::~PipelineCache() {
  pipelines_.clear();
  if (cache_ != VK_NULL_HANDLE) vkDestroyPipelineCache(device_.handle(), cache_, nullptr);
}

Result<const Pipeline*> PipelineCache::get(const PipelineDesc& desc) {
  if (auto it = pipelines_.find(desc); it != pipelines_.end()) return static_cast<const Pipeline*>(it->second.get());
  const auto spirv = shaders::find_spirv(desc.variant);
  if (spirv.empty()) {
    return make_error(ErrorCode::not_found, "shader variant '{}' is not in this build", desc.variant);
  }
  const VkDevice dev = device_.handle();
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->device_ = dev;
  p->desc_ = desc;

  VkShaderModuleCreateInfo mi{};
  mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  mi.codeSize = spirv.size_bytes();
  mi.pCode = spirv.data();
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateShaderModule(dev, &mi, nullptr, &p->module_),
                                  fmt::format("vkCreateShaderModule '{}'", desc.variant)));

  std::vector<VkDescriptorSetLayoutBinding> bindings(desc.n_bindings);
  for (uint32_t i = 0; i < desc.n_bindings; ++i) {
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dl{};
  dl.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  dl.bindingCount = desc.n_bindings;
  dl.pBindings = bindings.data();
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateDescriptorSetLayout(dev, &dl, nullptr, &p->set_layout_),
                                  fmt::format("vkCreateDescriptorSetLayout '{}'", desc.variant)));

  VkPushConstantRange pc{VK_SHADER_STAGE_COMPUTE_BIT, 0, desc.push_constant_size};
  VkPipelineLayoutCreateInfo li{};
  li.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  li.setLayoutCount = 1;
  li.pSetLayouts = &p->set_layout_;
  li.pushConstantRangeCount = desc.push_constant_size > 0 ? 1 : 0;
  li.pPushConstantRanges = &pc;
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreatePipelineLayout(dev, &li, nullptr, &p->layout_),
                                  fmt::format("vkCreatePipelineLayout '{}'", desc.variant)));

  std::vector<VkSpecializationMapEntry> entries(desc.spec.size());
  for (uint32_t i = 0; i < desc.spec.size(); ++i) entries[i] = {i, i * 4u, 4u};
  VkSpecializationInfo si{};
  si.mapEntryCount = static_cast<uint32_t>(entries.size());
  si.pMapEntries = entries.data();
  si.dataSize = desc.spec.size() * 4u;
  si.pData = desc.spec.data();

  VkComputePipelineCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = p->module_;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = desc.spec.empty() ? nullptr : &si;
  ci.layout = p->layout_;
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateComputePipelines(dev, cache_, 1, &ci, nullptr, &p->pipeline_),
                                  fmt::format("vkCreateComputePipelines '{}'", desc.variant)));
  const Pipeline* out = p.get();
  pipelines_.emplace(desc, std::move(p));
  return out;
}

}  // namespace tandem::gpu
