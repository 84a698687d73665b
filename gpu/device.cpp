#include "gpu/device.h"

#include <fmt/format.h>

#include "core/log.h"
#include "gpu/device_select.h"
#include "gpu/vk_status.h"

namespace tandem::gpu {

Result<std::unique_ptr<Device>> Device::create(const Instance& instance) {
  TANDEM_ASSIGN_OR_RETURN(auto choice, select_device(instance.devices(), instance.options().device));
  if (!choice) {
    return make_error(ErrorCode::not_found, "no Vulkan GPU chosen (--device {}; {} device(s) present): CPU only",
                      instance.options().device.empty() ? "auto" : instance.options().device,
                      instance.devices().size());
  }
  return create(instance, *choice);
}

Result<std::unique_ptr<Device>> Device::create(const Instance& instance, size_t index) {
  if (index >= instance.devices().size()) {
    return make_error(ErrorCode::not_found, "Vulkan device {} does not exist ({} present)", index,
                      instance.devices().size());
  }
  std::unique_ptr<Device> dev(new Device(instance));
  dev->caps_ = instance.devices()[index];
  dev->physical_ = instance.physical_device(index);
  const DeviceCaps& caps = dev->caps_;
  if (caps.api_version < VK_API_VERSION_1_2 || !caps.timeline_semaphore) {
    return make_error(ErrorCode::unsupported, "Vulkan device {} '{}' (API {}) lacks Vulkan 1.2 timeline semaphores",
                      index, caps.name, caps.api_version_string());
  }
  if (caps.compute_queue_families.empty()) {
    return make_error(ErrorCode::unsupported, "Vulkan device {} '{}' has no compute queue", index, caps.name);
  }
  dev->compute_family_ = caps.compute_queue_families.front();
  dev->transfer_family_ = caps.transfer_queue_family.value_or(dev->compute_family_);

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queues[2]{};
  uint32_t n_queues = 1;
  queues[0].sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  queues[0].queueFamilyIndex = dev->compute_family_;
  queues[0].queueCount = 1;
  queues[0].pQueuePriorities = &priority;
  if (dev->transfer_family_ != dev->compute_family_) {
    queues[1] = queues[0];
    queues[1].queueFamilyIndex = dev->transfer_family_;
    n_queues = 2;
  }

  std::vector<const char*> extensions;
  const GpuOptions& opt = instance.options();
  dev->host_import_ = caps.external_memory_host && caps.unified_memory && !opt.force_discrete && !opt.disable_host_import;
  if (dev->host_import_) extensions.push_back(VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);

  // Every shader feature DeviceCaps reports is enabled, so that a variant chosen from the caps
  // (gpu/ops/shader_variant.h) never uses a capability the device was created without.
  VkPhysicalDeviceVulkan11Features f11{};
  f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  f11.storageBuffer16BitAccess = caps.fp16 ? VK_TRUE : VK_FALSE;
  VkPhysicalDeviceVulkan12Features f12{};
  f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  f12.timelineSemaphore = VK_TRUE;
  f12.shaderFloat16 = caps.fp16 ? VK_TRUE : VK_FALSE;
  f12.shaderInt8 = caps.int8 ? VK_TRUE : VK_FALSE;
  f12.storageBuffer8BitAccess = caps.int8 ? VK_TRUE : VK_FALSE;
  f11.pNext = &f12;
  VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR fdot{};
  fdot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR;
  fdot.shaderIntegerDotProduct = VK_TRUE;
  if (caps.integer_dot_product) {
    // The instance asks for Vulkan 1.2, so the extension is enabled even on a 1.3 device.
    extensions.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    f12.pNext = &fdot;
  }
  VkDeviceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  ci.pNext = &f11;
  ci.queueCreateInfoCount = n_queues;
  ci.pQueueCreateInfos = queues;
  ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateDevice(dev->physical_, &ci, nullptr, &dev->device_),
                                  fmt::format("vkCreateDevice for '{}'", caps.name)));
  vkGetDeviceQueue(dev->device_, dev->compute_family_, 0, &dev->compute_queue_);
  vkGetDeviceQueue(dev->device_, dev->transfer_family_, 0, &dev->transfer_queue_);
  if (dev->host_import_) {
    dev->host_ptr_props_ = reinterpret_cast<PFN_vkGetMemoryHostPointerPropertiesEXT>(
        vkGetDeviceProcAddr(dev->device_, "vkGetMemoryHostPointerPropertiesEXT"));
    dev->host_import_ = dev->host_ptr_props_ != nullptr;
  }
  log_debug("vulkan: using {}", dev->summary());
  return dev;
}

Device::~Device() {
  if (device_ != VK_NULL_HANDLE) {
    vkDeviceWaitIdle(device_);
    vkDestroyDevice(device_, nullptr);
  }
}

std::string Device::summary() const {
  return fmt::format("{} [{}, {}, Vulkan {}, {}{}, subgroup {}]", caps_.name, device_type_name(caps_.type),
                     caps_.driver_name, caps_.api_version_string(), unified() ? "unified" : "discrete",
                     host_import_ ? " + host import" : "", caps_.subgroup_size);
}

}  // namespace tandem::gpu
