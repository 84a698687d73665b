#include "gpu/device_caps.h"

#include <fmt/format.h>

namespace tandem::gpu {

const char* device_type_name(DeviceType t) {
  switch (t) {
    case DeviceType::integrated: return "integrated";
    case DeviceType::discrete: return "discrete";
    case DeviceType::virtual_gpu: return "virtual";
    case DeviceType::cpu: return "cpu";
    case DeviceType::other: break;
  }
  return "other";
}

std::string DeviceCaps::api_version_string() const {
  // VK_API_VERSION_MAJOR/MINOR/PATCH, spelled out so this file needs no Vulkan header.
  return fmt::format("{}.{}.{}", (api_version >> 22) & 0x7Fu, (api_version >> 12) & 0x3FFu,
                     api_version & 0xFFFu);
}

uint64_t DeviceCaps::device_local_bytes() const {
  uint64_t total = 0;
  for (const auto& h : heaps) total += h.device_local ? h.size : 0;
  return total;
}

}  // namespace tandem::gpu
