// Device: one logical Vulkan device with a compute queue and, where the hardware has one, a
// transfer-only queue (used by StagingRing). Created for the device GpuOptions::device picks.
//
// Requires Vulkan 1.2 with timeline semaphores (every queue operation signals a timeline
// value, IREE-style). Enables VK_EXT_external_memory_host when the device has it, is unified
// and neither force_discrete nor disable_host_import is set.
// Errors: no device chosen -> not_found ("CPU only"), missing requirement -> unsupported.
// Threading: queues are used from one thread at a time (the caller serialises submits).
// Lifetime: the Instance outlives the Device; the Device outlives its buffers and pipelines.
#pragma once

#include <vulkan/vulkan.h>

#include <memory>
#include <optional>

#include "core/status.h"
#include "gpu/device_caps.h"
#include "gpu/instance.h"

namespace tandem::gpu {

class Device {
 public:
  // The device `instance.options().device` selects (see select_device); not_found when the
  // choice is "none" / "auto" finds no GPU.
  static Result<std::unique_ptr<Device>> create(const Instance& instance);
  // A specific device by index (Instance::devices()).
  static Result<std::unique_ptr<Device>> create(const Instance& instance, size_t index);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_; }
  VkPhysicalDevice physical() const { return physical_; }
  const Instance& instance() const { return instance_; }
  const DeviceCaps& caps() const { return caps_; }
  const GpuOptions& options() const { return instance_.options(); }

  // Unified memory as the backend uses it: caps().unified_memory unless force_discrete.
  bool unified() const { return caps_.unified_memory && !options().force_discrete; }
  // Host pointers can be imported as buffers (extension enabled, see above).
  bool host_import() const { return host_import_; }

  VkQueue compute_queue() const { return compute_queue_; }
  uint32_t compute_family() const { return compute_family_; }
  // The transfer-only queue, or the compute queue where there is none.
  VkQueue transfer_queue() const { return transfer_queue_; }
  uint32_t transfer_family() const { return transfer_family_; }
  bool has_transfer_queue() const { return transfer_family_ != compute_family_; }

  PFN_vkGetMemoryHostPointerPropertiesEXT get_memory_host_pointer_properties() const { return host_ptr_props_; }

  // "llvmpipe (LLVM 15.0.6, 256 bits) [cpu, llvmpipe, Vulkan 1.3.230, unified, subgroup 8]"
  std::string summary() const;

 private:
  explicit Device(const Instance& instance) : instance_(instance) {}
  const Instance& instance_;
  DeviceCaps caps_;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue compute_queue_ = VK_NULL_HANDLE;
  VkQueue transfer_queue_ = VK_NULL_HANDLE;
  uint32_t compute_family_ = 0;
  uint32_t transfer_family_ = 0;
  bool host_import_ = false;
  PFN_vkGetMemoryHostPointerPropertiesEXT host_ptr_props_ = nullptr;
};

}  // namespace tandem::gpu
