#include "shaders/spirv.h"

namespace tandem::shaders {

std::span<const uint32_t> find_spirv(std::string_view name) {
  // A few dozen variants: a linear scan costs nothing next to building a pipeline.
  for (const auto& m : all_spirv()) {
    if (m.name == name) return m.words;
  }
  return {};
}

}  // namespace tandem::shaders
