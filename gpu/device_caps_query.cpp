#include <cstring>
#include <string>

#include "gpu/instance.h"

namespace tandem::gpu {
namespace {

bool has_device_extension(const std::vector<VkExtensionProperties>& exts, const char* name) {
  for (const auto& e : exts) {
    if (std::strcmp(e.extensionName, name) == 0) return true;
  }
  return false;
}

DeviceType to_device_type(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceType::integrated;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceType::discrete;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return DeviceType::virtual_gpu;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceType::cpu;
    default: return DeviceType::other;
  }
}

}  // namespace

DeviceCaps query_device_caps(VkPhysicalDevice pd, uint32_t index) {
  DeviceCaps c;
  c.index = index;

  VkPhysicalDeviceProperties props{};
  vkGetPhysicalDeviceProperties(pd, &props);
  c.name = props.deviceName;
  c.type = to_device_type(props.deviceType);
  c.vendor_id = props.vendorID;
  c.device_id = props.deviceID;
  c.api_version = props.apiVersion;
  c.timestamps = props.limits.timestampComputeAndGraphics == VK_TRUE;
  c.timestamp_period_ns = props.limits.timestampPeriod;
  c.max_storage_buffer_range = props.limits.maxStorageBufferRange;
  c.min_storage_buffer_offset_alignment = props.limits.minStorageBufferOffsetAlignment;
  for (int i = 0; i < 3; ++i) c.max_compute_workgroup_count[i] = props.limits.maxComputeWorkGroupCount[i];
  c.max_compute_workgroup_invocations = props.limits.maxComputeWorkGroupInvocations;
  c.max_compute_shared_memory = props.limits.maxComputeSharedMemorySize;
  c.max_push_constants_size = props.limits.maxPushConstantsSize;

  uint32_t n_ext = 0;
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n_ext, nullptr);
  std::vector<VkExtensionProperties> exts(n_ext);
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n_ext, exts.data());
  exts.resize(n_ext);
  c.external_memory_host = has_device_extension(exts, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
  const bool v12 = props.apiVersion >= VK_API_VERSION_1_2;
  // The instance asks for Vulkan 1.2, so integer dot products need the extension enabled even
  // where the device is 1.3 (Device::create enables it).
  const bool dot_ext = has_device_extension(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);

  if (props.apiVersion >= VK_API_VERSION_1_1) {
    // Property chain: only structures the device's API version (or an extension) defines.
    VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, nullptr, {}};
    VkPhysicalDeviceSubgroupProperties sub{};
    sub.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    VkPhysicalDeviceMaintenance3Properties m3{};
    m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    VkPhysicalDeviceDriverProperties drv{};
    drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    VkPhysicalDeviceExternalMemoryHostPropertiesEXT host{};
    host.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT;
    p2.pNext = &sub;
    sub.pNext = &m3;
    void** tail = &m3.pNext;
    if (v12) {
      *tail = &drv;
      tail = &drv.pNext;
    }
    if (c.external_memory_host) *tail = &host;
    vkGetPhysicalDeviceProperties2(pd, &p2);
    c.subgroup_size = sub.subgroupSize;
    c.subgroup_arithmetic = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                            (sub.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                            (sub.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT);
    c.max_memory_allocation_size = m3.maxMemoryAllocationSize;
    if (v12) {
      c.driver_name = drv.driverName;
      c.driver_info = drv.driverInfo;
    }
    if (c.external_memory_host) c.min_imported_host_pointer_alignment = host.minImportedHostPointerAlignment;

    VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, nullptr, {}};
    VkPhysicalDeviceVulkan11Features f11{};
    f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
    VkPhysicalDeviceVulkan12Features f12{};
    f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
    VkPhysicalDeviceShaderIntegerDotProductFeatures fdot{};
    fdot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    if (v12) {
      f2.pNext = &f11;
      f11.pNext = &f12;
      if (dot_ext) f12.pNext = &fdot;
      vkGetPhysicalDeviceFeatures2(pd, &f2);
      c.fp16 = f12.shaderFloat16 && f11.storageBuffer16BitAccess;
      c.int8 = f12.shaderInt8 && f12.storageBuffer8BitAccess;
      c.timeline_semaphore = f12.timelineSemaphore == VK_TRUE;
      c.integer_dot_product = dot_ext && fdot.shaderIntegerDotProduct == VK_TRUE;
    }
  }

  VkPhysicalDeviceMemoryProperties mem{};
  vkGetPhysicalDeviceMemoryProperties(pd, &mem);
  for (uint32_t h = 0; h < mem.memoryHeapCount; ++h) {
    c.heaps.push_back({mem.memoryHeaps[h].size, (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
  }
  for (uint32_t t = 0; t < mem.memoryTypeCount; ++t) {
    c.memory_types.push_back({mem.memoryTypes[t].propertyFlags, mem.memoryTypes[t].heapIndex});
  }
  // Unified: every device-local heap can be reached through a host-visible type.
  bool all_visible = true;
  for (uint32_t h = 0; h < c.heaps.size(); ++h) {
    if (!c.heaps[h].device_local) continue;
    bool visible = false;
    for (const auto& t : c.memory_types) {
      visible |= t.heap == h && (t.flags & mem_device_local) && (t.flags & mem_host_visible);
    }
    all_visible &= visible;
  }
  c.unified_memory = all_visible || c.type == DeviceType::integrated || c.type == DeviceType::cpu;

  uint32_t n_q = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n_q, nullptr);
  std::vector<VkQueueFamilyProperties> qf(n_q);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n_q, qf.data());
  for (uint32_t q = 0; q < n_q; ++q) {
    const auto f = qf[q].queueFlags;
    if (f & VK_QUEUE_COMPUTE_BIT) c.compute_queue_families.push_back(q);
    if ((f & VK_QUEUE_TRANSFER_BIT) && !(f & VK_QUEUE_COMPUTE_BIT) && !(f & VK_QUEUE_GRAPHICS_BIT) &&
        !c.transfer_queue_family) {
      c.transfer_queue_family = q;
    }
  }
  return c;
}

}  // namespace tandem::gpu
