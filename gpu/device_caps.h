// DeviceCaps: what one Vulkan physical device offers Tandem, as plain data (no Vulkan types),
// so the device choice, the planner's hardware profile and `tandem devices` can use it
// without a device. Filled by query_device_caps (device_caps_query.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tandem::gpu {

enum class DeviceType { other, integrated, discrete, virtual_gpu, cpu };
const char* device_type_name(DeviceType t);  // "integrated", "discrete", "virtual", "cpu", "other"

struct MemoryHeapInfo {
  uint64_t size = 0;  // bytes
  bool device_local = false;
};

// Vulkan's VkMemoryPropertyFlags bits, kept numerically identical.
enum MemoryFlag : uint32_t {
  mem_device_local = 0x1,
  mem_host_visible = 0x2,
  mem_host_coherent = 0x4,
  mem_host_cached = 0x8,
  mem_lazily_allocated = 0x10,
};

struct MemoryTypeInfo {
  uint32_t flags = 0;  // MemoryFlag bits
  uint32_t heap = 0;   // index into DeviceCaps::heaps
};

struct DeviceCaps {
  uint32_t index = 0;  // position in vkEnumeratePhysicalDevices order
  std::string name;
  DeviceType type = DeviceType::other;
  uint32_t vendor_id = 0;
  uint32_t device_id = 0;
  std::string driver_name;  // VkPhysicalDeviceDriverProperties (e.g. "llvmpipe", "NVIDIA")
  std::string driver_info;
  uint32_t api_version = 0;  // VK_MAKE_API_VERSION packing; see api_version_string()
  std::vector<MemoryHeapInfo> heaps;
  std::vector<MemoryTypeInfo> memory_types;
  // Every device-local heap is reachable through a host-visible type, or the device is
  // integrated / a CPU: weights can be used where the host put them.
  bool unified_memory = false;
  // Shader features. Device::create enables every one reported here, and the ops pick their
  // shader variants from them (gpu/ops/shader_variant.h).
  uint32_t subgroup_size = 0;
  bool subgroup_arithmetic = false;  // subgroupAdd etc. in compute shaders
  bool fp16 = false;                 // shaderFloat16 + storageBuffer16BitAccess
  bool int8 = false;                 // shaderInt8 + storageBuffer8BitAccess
  // VK_KHR_shader_integer_dot_product (the extension: the instance asks for Vulkan 1.2) with
  // shaderIntegerDotProduct.
  bool integer_dot_product = false;
  bool external_memory_host = false;  // VK_EXT_external_memory_host
  uint64_t min_imported_host_pointer_alignment = 0;  // bytes; 0 without the extension
  bool timeline_semaphore = false;
  bool timestamps = false;  // timestampComputeAndGraphics
  float timestamp_period_ns = 0;
  uint64_t max_memory_allocation_size = 0;  // bytes
  uint64_t max_storage_buffer_range = 0;    // bytes
  uint64_t min_storage_buffer_offset_alignment = 0;  // bytes
  uint32_t max_compute_workgroup_count[3] = {0, 0, 0};
  uint32_t max_compute_workgroup_invocations = 0;
  uint32_t max_compute_shared_memory = 0;  // bytes
  uint32_t max_push_constants_size = 0;    // bytes
  std::vector<uint32_t> compute_queue_families;
  std::optional<uint32_t> transfer_queue_family;  // transfer-only (no graphics, no compute)

  bool is_software() const { return type == DeviceType::cpu; }
  std::string api_version_string() const;  // "1.3.230"
  uint64_t device_local_bytes() const;     // sum of device-local heaps
};

}  // namespace tandem::gpu
