// Budget: the memory the plan may use and what it optimises. Sizes in bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem {

enum class Objective { decode, prefill };

inline std::string_view objective_name(Objective o) {
  return o == Objective::decode ? "decode" : "prefill";
}
inline std::optional<Objective> objective_from_name(std::string_view s) {
  if (s == "decode") return Objective::decode;
  if (s == "prefill") return Objective::prefill;
  return std::nullopt;
}

struct Budget {
  // Device memory the plan may allocate on the GPU; clamped to the GPU's memory_bytes.
  uint64_t gpu_mem = 0;
  // Host RAM the plan may keep resident (weights, KV cache, caches); clamped to ram_bytes.
  // On a unified-memory GPU, GPU allocations are host RAM too and count here as well.
  uint64_t ram = 0;
  Objective objective = Objective::decode;
};

}  // namespace tandem
