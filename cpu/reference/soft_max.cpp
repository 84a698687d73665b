#include <cassert>
#include <cmath>
#include <limits>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

void soft_max(std::span<const float> x, std::span<float> y) {
  assert(y.size() == x.size());
  double max = -std::numeric_limits<double>::infinity();
  for (float v : x) max = std::fmax(max, static_cast<double>(v));
  if (std::isinf(max) && max < 0) {
    for (float& v : y) v = 0.0f;
    return;
  }
  // Two passes so that y may alias x: the sum needs every input before any output is written.
  double sum = 0.0;
  for (float v : x) sum += std::exp(static_cast<double>(v) - max);
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - max) / sum);
}

}  // namespace tandem::cpu::reference
