#include "gpu/memory.h"

#include <algorithm>
#include <bit>

namespace tandem::gpu {

const char* memory_intent_name(MemoryIntent intent) {
  switch (intent) {
    case MemoryIntent::device_weights: return "device_weights";
    case MemoryIntent::upload_staging: return "upload_staging";
    case MemoryIntent::readback: return "readback";
    case MemoryIntent::shared: return "shared";
  }
  return "?";
}

MemoryFlagsWanted memory_flags_for(MemoryIntent intent, bool unified) {
  const uint32_t host = mem_host_visible | mem_host_coherent;
  switch (intent) {
    case MemoryIntent::device_weights:
      if (unified) return {host, mem_device_local, 0};
      // Host-visible device-local memory on a discrete GPU is the small BAR window: keep
      // weights out of it; they arrive by copy anyway.
      return {0, mem_device_local, mem_host_visible};
    case MemoryIntent::upload_staging:
      return {host, 0, unified ? 0u : static_cast<uint32_t>(mem_device_local)};
    case MemoryIntent::readback:
      return {host, mem_host_cached, 0};
    case MemoryIntent::shared:
      return {host, mem_device_local, 0};
  }
  return {};
}

std::vector<uint32_t> choose_memory_types(std::span<const MemoryTypeInfo> types, uint32_t type_bits,
                                          MemoryIntent intent, bool unified) {
  const MemoryFlagsWanted w = memory_flags_for(intent, unified);
  std::vector<std::pair<int, uint32_t>> ranked;  // (-score, index)
  for (uint32_t i = 0; i < types.size() && i < 32; ++i) {
    if (!(type_bits & (1u << i))) continue;
    const uint32_t f = types[i].flags;
    if ((f & w.required) != w.required) continue;
    const int score = std::popcount(f & w.preferred) - std::popcount(f & w.avoided);
    ranked.emplace_back(-score, i);
  }
  std::stable_sort(ranked.begin(), ranked.end());
  std::vector<uint32_t> out;
  for (const auto& [neg_score, i] : ranked) out.push_back(i);
  return out;
}

}  // namespace tandem::gpu
