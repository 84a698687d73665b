// Instance: the Vulkan instance, its physical devices with their DeviceCaps, and (with
// GpuOptions::validation) the Khronos validation layer plus a VK_EXT_debug_utils messenger
// that logs and COUNTS every warning and error it reports, so tests can require zero.
//
// Errors: no loader-visible driver / instance creation failure -> device_error naming the
// VkResult; validation requested but the layer is not installed -> not_found.
// Threading: create and query from one thread; the message counter is atomic.
// Lifetime: outlives every Device created from it.
#pragma once

#include <vulkan/vulkan.h>

#include <atomic>
#include <memory>
#include <vector>

#include "core/status.h"
#include "gpu/device_caps.h"
#include "gpu/gpu_options.h"

namespace tandem::gpu {

class Instance {
 public:
  static Result<std::unique_ptr<Instance>> create(const GpuOptions& options);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  VkInstance handle() const { return instance_; }
  // In vkEnumeratePhysicalDevices order; DeviceCaps::index is the position.
  const std::vector<DeviceCaps>& devices() const { return caps_; }
  VkPhysicalDevice physical_device(size_t index) const { return physical_[index]; }
  const GpuOptions& options() const { return options_; }

  bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }
  // Validation-layer warnings and errors (and any error-severity message) since creation;
  // the loader's own general-type warnings are not counted (see instance.cpp).
  uint64_t validation_message_count() const { return messages_->load(); }

 private:
  Instance() = default;
  GpuOptions options_;
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  std::unique_ptr<std::atomic<uint64_t>> messages_ = std::make_unique<std::atomic<uint64_t>>(0);
  std::vector<VkPhysicalDevice> physical_;
  std::vector<DeviceCaps> caps_;
};

// Reads every DeviceCaps field from a physical device (Vulkan 1.1+ property chains).
DeviceCaps query_device_caps(VkPhysicalDevice pd, uint32_t index);

}  // namespace tandem::gpu
