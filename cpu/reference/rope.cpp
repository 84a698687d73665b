#include <cassert>
#include <cmath>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

void rope_neox(std::span<float> head, int64_t pos, int n_rot, float base) {
  assert(n_rot > 0 && n_rot % 2 == 0 && static_cast<size_t>(n_rot) <= head.size());
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    // Direct power rather than ggml's running product theta *= theta_scale (f32): the spec
    // value, which fast paths approach to ~1e-6 relative at the positions we test.
    const double theta =
        static_cast<double>(pos) * std::pow(static_cast<double>(base), -2.0 * i / n_rot);
    const double c = std::cos(theta);
    const double s = std::sin(theta);
    const double x0 = head[i];
    const double x1 = head[i + half];
    head[i] = static_cast<float>(x0 * c - x1 * s);
    head[i + half] = static_cast<float>(x0 * s + x1 * c);
  }
}

}  // namespace tandem::cpu::reference
