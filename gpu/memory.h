// Memory by intent (IREE's allocate-for-upload/readback/shared; ncnn's required / preferred /
// avoided property flags). Callers say what a buffer is for; choose_memory_types ranks the
// device's memory types for it. Pure functions over DeviceCaps: testable without a device.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gpu/device_caps.h"

namespace tandem::gpu {

enum class MemoryIntent {
  // Weights the GPU reads many times. Unified memory: host-visible (filled in place, no
  // staging). Discrete: device-local, filled through a StagingRing.
  device_weights,
  // Host writes once, GPU copies out: host-visible + coherent, avoiding scarce device-local
  // host-visible (BAR) memory on discrete devices.
  upload_staging,
  // GPU writes, host reads: host-visible + coherent, preferably cached.
  readback,
  // Activations both sides touch every token: host-visible + coherent, preferably device-local.
  shared,
};
const char* memory_intent_name(MemoryIntent intent);

struct MemoryFlagsWanted {
  uint32_t required = 0;   // MemoryFlag bits a type must have
  uint32_t preferred = 0;  // each present bit scores +1
  uint32_t avoided = 0;    // each present bit scores -1
};

// The flags for `intent` on a device that is (or behaves as) unified or discrete.
MemoryFlagsWanted memory_flags_for(MemoryIntent intent, bool unified);

// Memory type indices allowed by `type_bits` (VkMemoryRequirements::memoryTypeBits) that have
// every required flag, best score first (ties: lower index first, as Vulkan orders types by
// performance). Empty when none qualifies. Callers try them in order until one allocates.
std::vector<uint32_t> choose_memory_types(std::span<const MemoryTypeInfo> types, uint32_t type_bits,
                                          MemoryIntent intent, bool unified);

}  // namespace tandem::gpu
